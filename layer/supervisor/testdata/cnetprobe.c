// cnetprobe is the glibc test program for the supervisor's socket calls, for what the Go
// probe cannot do: each argument "op:addr" runs one exchange and prints one line
// "op:addr result". Addresses are IPv4 "a.b.c.d:port".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

static volatile int usr1;
static struct sockaddr_in self_addr; // where on_usr1_send sends a datagram to
static void on_usr1(int sig) { (void)sig; usr1++; }
static void on_usr1_send(int sig) {
	(void)sig;
	usr1++;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	sendto(fd, "self", 4, 0, (struct sockaddr *)&self_addr, sizeof self_addr);
	close(fd);
}

// ready tells the test (on stderr) that the next call is about to block.
static void ready(void) { write(2, "ready\n", 6); }

static struct sockaddr_in parse(const char *s) {
	struct sockaddr_in sa = {0};
	char ip[64];
	const char *colon = strrchr(s, ':');
	snprintf(ip, sizeof ip, "%.*s", (int)(colon - s), s);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(atoi(colon + 1));
	inet_pton(AF_INET, ip, &sa.sin_addr);
	return sa;
}

static const char *fmt(const struct sockaddr_in *sa) {
	static char buf[64];
	char ip[32];
	inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
	snprintf(buf, sizeof buf, "%s:%d", ip, ntohs(sa->sin_port));
	return buf;
}

static long ms_since(struct timespec *t0) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

// readlines reads from fd until n newlines, turning them into '|'.
static void readlines(int fd, int n, char *out, size_t cap) {
	size_t got = 0;
	while (n > 0 && got < cap - 1) {
		ssize_t r = read(fd, out + got, cap - 1 - got);
		if (r <= 0) break;
		for (ssize_t i = 0; i < r; i++) if (out[got + i] == '\n') { out[got + i] = '|'; n--; }
		got += r;
	}
	out[got] = 0;
}

#define FAIL(what) do { printf("error: %s\n", strerror(errno)); (void)(what); goto next; } while (0)

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		char *op = strdup(argv[i]);
		char *arg = strchr(op, ':');
		if (arg) *arg++ = 0; else arg = "";
		printf("%s ", argv[i]);
		if (!strcmp(op, "mmsg")) {
			// sendmmsg of three datagrams, then recvmmsg until three came back
			struct sockaddr_in dst = parse(arg);
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			const char *payload[3] = {"a", "bb", "ccc"};
			struct iovec iov[3];
			struct mmsghdr m[3];
			memset(m, 0, sizeof m);
			for (int k = 0; k < 3; k++) {
				iov[k].iov_base = (void *)payload[k];
				iov[k].iov_len = strlen(payload[k]);
				m[k].msg_hdr.msg_iov = &iov[k];
				m[k].msg_hdr.msg_iovlen = 1;
				m[k].msg_hdr.msg_name = &dst;
				m[k].msg_hdr.msg_namelen = sizeof dst;
			}
			int sent = sendmmsg(fd, m, 3, 0);
			if (sent < 0) FAIL(0);
			printf("sent=%d len=%u,%u,%u ", sent, m[0].msg_len, m[1].msg_len, m[2].msg_len);
			char bufs[3][128], from[3][64];
			struct sockaddr_in src[3];
			int got = 0;
			while (got < 3) {
				struct mmsghdr r[3];
				struct iovec riov[3];
				memset(r, 0, sizeof r);
				for (int k = 0; k < 3 - got; k++) {
					riov[k].iov_base = bufs[got + k];
					riov[k].iov_len = sizeof bufs[0] - 1;
					r[k].msg_hdr.msg_iov = &riov[k];
					r[k].msg_hdr.msg_iovlen = 1;
					r[k].msg_hdr.msg_name = &src[got + k];
					r[k].msg_hdr.msg_namelen = sizeof src[0];
				}
				int n = recvmmsg(fd, r, 3 - got, 0, NULL);
				if (n <= 0) break;
				for (int k = 0; k < n; k++) {
					bufs[got + k][r[k].msg_len] = 0;
					snprintf(from[got + k], sizeof from[0], "%s", fmt(&src[got + k]));
				}
				got += n;
			}
			if (got < 3) FAIL(0);
			printf("got=%d from=%s,%s,%s data=%s|%s|%s\n", got, from[0], from[1], from[2], bufs[0], bufs[1], bufs[2]);
			close(fd);
		} else if (!strcmp(op, "peek")) {
			// MSG_PEEK|MSG_TRUNC says the whole length; a short read sets MSG_TRUNC; a short
			// address buffer gets what fits and the whole length
			struct sockaddr_in dst = parse(arg), src;
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			if (sendto(fd, "abcdefgh", 8, 0, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			char buf[64];
			socklen_t sl = sizeof src;
			ssize_t p = recvfrom(fd, buf, 4, MSG_PEEK | MSG_TRUNC, (struct sockaddr *)&src, &sl);
			if (p < 0) FAIL(0);
			printf("peek=%zd peekfrom=%s ", p, fmt(&src));
			unsigned char name[16];
			memset(name, 0xee, sizeof name);
			struct iovec iov = {buf, 4};
			struct msghdr mh = {.msg_name = name, .msg_namelen = 6, .msg_iov = &iov, .msg_iovlen = 1};
			ssize_t n = recvmsg(fd, &mh, 0);
			if (n < 0) FAIL(0);
			buf[n] = 0;
			printf("read=%zd flags_trunc=%d namelen=%u partial=%d.%d untouched=%d data=%s\n", n, (mh.msg_flags & MSG_TRUNC) != 0,
			       mh.msg_namelen, name[4], name[5], name[6] == 0xee, buf);
			close(fd);
		} else if (!strcmp(op, "shortname")) {
			// getpeername with a 4-byte buffer: family and port, then the whole length
			struct sockaddr_in dst = parse(arg);
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			unsigned char peer[16];
			memset(peer, 0xee, sizeof peer);
			socklen_t pl = 4;
			if (getpeername(fd, (struct sockaddr *)peer, &pl) < 0) FAIL(0);
			printf("peerlen=%u peer4=%02x%02x%02x%02x untouched=%d ", pl, peer[0], peer[1], peer[2], peer[3], peer[4] == 0xee);
			struct sockaddr_in me;
			socklen_t ml = sizeof me;
			if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0) FAIL(0);
			char ip[32];
			inet_ntop(AF_INET, &me.sin_addr, ip, sizeof ip);
			printf("sockname=%s\n", ip);
			close(fd);
		} else if (!strcmp(op, "nonblock")) {
			// a non-blocking socket: EAGAIN until the echo is there, then EAGAIN again
			struct sockaddr_in dst = parse(arg), src;
			int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
			if (sendto(fd, "nb", 2, 0, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			char buf[128];
			ssize_t n;
			for (int k = 0; k < 5000; k++) {
				socklen_t sl = sizeof src;
				n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&src, &sl);
				if (n >= 0 || errno != EAGAIN) break;
				usleep(1000);
			}
			if (n < 0) FAIL(0);
			buf[n] = 0;
			socklen_t sl = sizeof src;
			ssize_t again = recvfrom(fd, buf + n + 1, 16, MSG_DONTWAIT, (struct sockaddr *)&src, &sl);
			printf("got=%s then=%s\n", buf, again >= 0 ? "data" : errno == EAGAIN ? "EAGAIN" : strerror(errno));
			close(fd);
		} else if (!strcmp(op, "rcvtimeo")) {
			// SO_RCVTIMEO on a relayed socket whose relay never answers: EAGAIN in time
			struct sockaddr_in dst = parse(arg), src;
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			struct timeval tv = {0, 200000};
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
			if (sendto(fd, "x", 1, 0, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			struct timespec t0;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			char buf[16];
			socklen_t sl = sizeof src;
			ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &sl);
			int saved = errno;
			long ms = ms_since(&t0);
			if (n >= 0) printf("data?\n"); else printf("error: %s waited>=150ms=%d\n", strerror(saved), ms >= 150);
			close(fd);
		} else if (!strcmp(op, "fastopen")) {
			// TCP Fast Open: sendto with MSG_FASTOPEN connects and sends
			struct sockaddr_in dst = parse(arg);
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			ssize_t n = sendto(fd, "tfo!\n", 5, MSG_FASTOPEN, (struct sockaddr *)&dst, sizeof dst);
			if (n < 0) FAIL(0);
			char buf[256];
			readlines(fd, 2, buf, sizeof buf);
			printf("sent=%zd got=%s\n", n, buf);
			close(fd);
		} else if (!strcmp(op, "connectudp")) {
			// a connected UDP socket: getpeername, send, recvfrom with a source
			struct sockaddr_in dst = parse(arg), peer, src;
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			socklen_t pl = sizeof peer;
			if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0) FAIL(0);
			printf("peer=%s ", fmt(&peer));
			if (send(fd, "cu", 2, 0) < 0) FAIL(0);
			char buf[128];
			socklen_t sl = sizeof src;
			ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&src, &sl);
			if (n < 0) FAIL(0);
			buf[n] = 0;
			printf("got=%s from=%s\n", buf, fmt(&src));
			close(fd);
		} else if (!strcmp(op, "relayfail")) {
			struct sockaddr_in dst = parse(arg);
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			if (sendto(fd, "x", 1, 0, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			printf("sent\n");
			close(fd);
		} else if (!strcmp(op, "unix")) {
			// AF_UNIX datagrams with names asked for: none of the layer's business
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) FAIL(0);
			struct iovec iov = {"u", 1};
			struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
			if (sendmsg(sv[0], &mh, 0) < 0) FAIL(0);
			char buf[8], name[128];
			struct iovec riov = {buf, sizeof buf};
			struct msghdr rh = {.msg_name = name, .msg_namelen = sizeof name, .msg_iov = &riov, .msg_iovlen = 1};
			if (recvmsg(sv[1], &rh, 0) != 1 || buf[0] != 'u') FAIL(0);
			printf("ok\n");
			close(sv[0]);
			close(sv[1]);
		} else if (!strcmp(op, "sigrecv")) {
			// a handled signal (no SA_RESTART) while recvfrom waits on a relayed socket: EINTR
			struct sigaction sa = {0};
			sa.sa_handler = on_usr1;
			sigaction(SIGUSR1, &sa, NULL);
			struct sockaddr_in dst = parse(arg), src;
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			if (sendto(fd, "x", 1, 0, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			char buf[16];
			socklen_t sl = sizeof src;
			usr1 = 0;
			ready();
			ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &sl);
			if (n >= 0) printf("data?\n"); else printf("error: %s handled=%d\n", strerror(errno), usr1);
			close(fd);
		} else if (!strcmp(op, "sigrecvrestart")) {
			// the same with SA_RESTART: the handler runs, the receive goes on and gets the
			// datagram the handler sent to the socket from this machine (source untouched)
			struct sigaction sa = {0};
			sa.sa_handler = on_usr1_send;
			sa.sa_flags = SA_RESTART;
			sigaction(SIGUSR1, &sa, NULL);
			struct sockaddr_in dst = parse(arg), src;
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			if (sendto(fd, "x", 1, 0, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			socklen_t al = sizeof self_addr;
			getsockname(fd, (struct sockaddr *)&self_addr, &al);
			self_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			char buf[16];
			socklen_t sl = sizeof src;
			usr1 = 0;
			ready();
			ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&src, &sl);
			if (n < 0) FAIL(0);
			buf[n] = 0;
			char ip[32];
			inet_ntop(AF_INET, &src.sin_addr, ip, sizeof ip);
			printf("got=%s handled=%d from=%s\n", buf, usr1, ip);
			close(fd);
		} else if (!strcmp(op, "sigconnect")) {
			// a handled signal (no SA_RESTART) while connect waits for a slow remote side:
			// EINTR without waiting for it
			struct sigaction sa = {0};
			sa.sa_handler = on_usr1;
			sigaction(SIGUSR1, &sa, NULL);
			struct sockaddr_in dst = parse(arg);
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			struct timespec t0;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			usr1 = 0;
			ready();
			int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
			int saved = errno;
			long ms = ms_since(&t0);
			if (r == 0) printf("connected?\n"); else printf("error: %s handled=%d fast=%d\n", strerror(saved), usr1, ms < 3000);
			close(fd);
		} else if (!strcmp(op, "blockrecv")) {
			// waits on a relayed socket whose relay never answers, until killed
			struct sockaddr_in dst = parse(arg), src;
			int fd = socket(AF_INET, SOCK_DGRAM, 0);
			if (sendto(fd, "x", 1, 0, (struct sockaddr *)&dst, sizeof dst) < 0) FAIL(0);
			char buf[16];
			socklen_t sl = sizeof src;
			ready();
			ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &sl);
			printf("returned %zd\n", n);
		} else if (!strcmp(op, "alarmconnect")) {
			// a 2 ms interval timer while a blocking connect waits for the remote side
			struct sigaction sa = {0};
			sa.sa_handler = on_alarm;
			sa.sa_flags = SA_RESTART;
			sigaction(SIGALRM, &sa, NULL);
			struct itimerval it = {{0, 2000}, {0, 2000}};
			setitimer(ITIMER_REAL, &it, NULL);
			struct sockaddr_in dst = parse(arg);
			int fd = socket(AF_INET, SOCK_STREAM, 0);
			int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
			int saved = errno;
			struct itimerval off = {0};
			setitimer(ITIMER_REAL, &off, NULL);
			// a connect restarted after the connection was made says EISCONN, as the
			// kernel's own restarted connect does
			if (r < 0 && saved != EISCONN) { errno = saved; FAIL(0); }
			char buf[128];
			readlines(fd, 1, buf, sizeof buf);
			buf[strcspn(buf, "|")] = 0;
			printf("alarms>0=%d got=%s\n", alarms > 0, buf);
			close(fd);
		} else {
			printf("unknown op\n");
		}
	next:
		free(op);
	}
	return 0;
}
