// cacceptprobe is the glibc test program for the supervisor's listen and accept: each
// argument is a step run on one listener (made by "listen" on 127.0.0.1:0), printing one line
// "step result". Connections it makes itself come from 127.0.0.2, which the test's handler
// takes for connections the core delivered (client 203.0.113.7, same port).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int lfd = -1;              // the listener
static struct sockaddr_in laddr;  // its address

static volatile int usr1;
static void on_usr1(int sig) { (void)sig; usr1++; }

static volatile int done;
static void on_usr2(int sig) { (void)sig; done = 1; }

// ready tells the test (on stderr) that the next call is about to block.
static void ready(void) { write(2, "ready\n", 6); }

static const char *ip(const struct sockaddr_in *sa) {
	static char buf[4][32];
	static int k;
	k = (k + 1) % 4;
	inet_ntop(AF_INET, &sa->sin_addr, buf[k], sizeof buf[k]);
	return buf[k];
}

// client connects to the listener from 127.0.0.2 (delivered) or 127.0.0.1 (local) and
// returns the socket; *port gets its port. Async-signal-safe.
static int client(int delivered, int *port) {
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in from = {.sin_family = AF_INET};
	from.sin_addr.s_addr = htonl(delivered ? 0x7f000002 : 0x7f000001);
	if (bind(c, (struct sockaddr *)&from, sizeof from) < 0) return -1;
	if (connect(c, (struct sockaddr *)&laddr, sizeof laddr) < 0) return -1;
	socklen_t l = sizeof from;
	getsockname(c, (struct sockaddr *)&from, &l);
	if (port) *port = ntohs(from.sin_port);
	return c;
}

static int sig_client = -1;
static void on_usr1_connect(int sig) {
	(void)sig;
	usr1++;
	sig_client = client(1, NULL);
}

// reset says whether the server side of c was reset.
static const char *reset(int c) {
	char b;
	struct timeval tv = {5, 0};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	ssize_t n = read(c, &b, 1);
	if (n < 0 && errno == ECONNRESET) return "reset";
	if (n == 0) return "eof";
	return n < 0 ? strerror(errno) : "data";
}

// next accepts one more delivered connection and returns its peer's address.
static const char *next(void) {
	int c = client(1, NULL);
	struct sockaddr_in sa;
	socklen_t l = sizeof sa;
	int a = accept(lfd, (struct sockaddr *)&sa, &l);
	close(c);
	if (a < 0) return strerror(errno);
	close(a);
	return ip(&sa);
}

// acceptor is a thread of "threads": it accepts until a client says 'q', answering 'x' to
// each 'c'.
static atomic_int served;
static void *acceptor(void *arg) {
	(void)arg;
	for (;;) {
		struct sockaddr_in sa;
		socklen_t l = sizeof sa;
		int a = accept(lfd, (struct sockaddr *)&sa, &l);
		if (a < 0) {
			if (errno == EINTR) continue;
			return NULL;
		}
		char b = 0;
		read(a, &b, 1);
		if (b == 'c' && sa.sin_addr.s_addr == htonl(0xcb007107)) { // 203.0.113.7
			served++;
			write(a, "x", 1);
		}
		close(a);
		if (b == 'q') return NULL;
	}
}

static long ms_since(struct timespec *t0) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

#define FAIL() do { printf("error: %s\n", strerror(errno)); goto next; } while (0)

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		const char *op = argv[i];
		printf("%s ", op);
		if (!strcmp(op, "listen")) {
			lfd = socket(AF_INET, SOCK_STREAM, 0);
			laddr.sin_family = AF_INET;
			laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (bind(lfd, (struct sockaddr *)&laddr, sizeof laddr) < 0) FAIL();
			if (listen(lfd, 64) < 0) FAIL();
			socklen_t l = sizeof laddr;
			getsockname(lfd, (struct sockaddr *)&laddr, &l);
			printf("port=%d\n", ntohs(laddr.sin_port));
		} else if (!strcmp(op, "relisten")) {
			// a new backlog for a listening socket: not a new listener
			if (listen(lfd, 128) < 0) FAIL();
			printf("ok\n");
		} else if (!strcmp(op, "flags") || !strcmp(op, "flags0")) {
			// blocking accept4 with a connection queued, with and without the flags
			int port;
			int c = client(1, &port);
			if (c < 0) FAIL();
			struct sockaddr_in sa, pa, na;
			memset(&sa, 0xff, sizeof sa);
			socklen_t l = sizeof sa, pl = sizeof pa, nl = sizeof na;
			int flags = strcmp(op, "flags") ? 0 : SOCK_CLOEXEC | SOCK_NONBLOCK;
			int a = accept4(lfd, (struct sockaddr *)&sa, &l, flags);
			if (a < 0) FAIL();
			getpeername(a, (struct sockaddr *)&pa, &pl);
			getsockname(a, (struct sockaddr *)&na, &nl);
			printf("peer=%s client_port=%d len=%d cloexec=%d nonblock=%d getpeername=%s sockname=%s\n",
			       ip(&sa), ntohs(sa.sin_port) == port, (int)l, !!(fcntl(a, F_GETFD) & FD_CLOEXEC),
			       !!(fcntl(a, F_GETFL) & O_NONBLOCK), ip(&pa), ip(&na));
			close(a);
			close(c);
		} else if (!strcmp(op, "accept")) {
			int port;
			int c = client(1, &port);
			struct sockaddr_in sa;
			socklen_t l = sizeof sa;
			int a = accept(lfd, (struct sockaddr *)&sa, &l);
			if (a < 0) FAIL();
			printf("peer=%s client_port=%d len=%d\n", ip(&sa), ntohs(sa.sin_port) == port, (int)l);
			close(a);
			close(c);
		} else if (!strcmp(op, "short")) {
			// a 4-byte buffer: family and port written, the rest untouched, the length 16
			int port;
			int c = client(1, &port);
			unsigned char buf[16];
			memset(buf, 0xee, sizeof buf);
			socklen_t l = 4;
			int a = accept(lfd, (struct sockaddr *)buf, &l);
			if (a < 0) FAIL();
			int untouched = 1;
			for (int k = 4; k < 16; k++) untouched &= buf[k] == 0xee;
			unsigned short fam, p;
			memcpy(&fam, buf, 2);
			memcpy(&p, buf + 2, 2);
			printf("len=%d family=%d port_ok=%d untouched=%d\n", (int)l, fam, ntohs(p) == port, untouched);
			close(a);
			close(c);
		} else if (!strcmp(op, "null")) {
			// no address buffer: not trapped; getpeername names the client
			int port;
			int c = client(1, &port);
			int a = accept(lfd, NULL, NULL);
			if (a < 0) FAIL();
			struct sockaddr_in pa, na;
			socklen_t pl = sizeof pa, nl = sizeof na;
			getpeername(a, (struct sockaddr *)&pa, &pl);
			getsockname(a, (struct sockaddr *)&na, &nl);
			printf("getpeername=%s client_port=%d sockname=%s\n", ip(&pa), ntohs(pa.sin_port) == port, ip(&na));
			close(a);
			close(c);
		} else if (!strcmp(op, "local")) {
			// a local client: the kernel's addresses
			int port;
			int c = client(0, &port);
			struct sockaddr_in sa, na;
			socklen_t l = sizeof sa, nl = sizeof na;
			int a = accept(lfd, (struct sockaddr *)&sa, &l);
			if (a < 0) FAIL();
			getsockname(a, (struct sockaddr *)&na, &nl);
			printf("peer=%s client_port=%d sockname=%s\n", ip(&sa), ntohs(sa.sin_port) == port, ip(&na));
			close(a);
			close(c);
		} else if (!strcmp(op, "nonblock")) {
			// a non-blocking listener: EAGAIN at once when empty
			int fl = fcntl(lfd, F_GETFL);
			fcntl(lfd, F_SETFL, fl | O_NONBLOCK);
			struct sockaddr_in sa;
			socklen_t l = sizeof sa;
			int a = accept(lfd, (struct sockaddr *)&sa, &l);
			const char *empty = a < 0 && errno == EAGAIN ? "EAGAIN" : "?";
			int c = client(1, NULL);
			struct pollfd p = {.fd = lfd, .events = POLLIN};
			poll(&p, 1, 5000);
			a = accept(lfd, (struct sockaddr *)&sa, &l);
			fcntl(lfd, F_SETFL, fl);
			if (a < 0) FAIL();
			printf("empty=%s then=%s\n", empty, ip(&sa));
			close(a);
			close(c);
		} else if (!strcmp(op, "rcvtimeo")) {
			// SO_RCVTIMEO on the listener bounds a blocking accept: EAGAIN
			struct timeval tv = {0, 200000}, off = {0, 0};
			setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
			struct timespec t0;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			struct sockaddr_in sa;
			socklen_t l = sizeof sa;
			int a = accept(lfd, (struct sockaddr *)&sa, &l);
			int saved = errno;
			long ms = ms_since(&t0);
			setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &off, sizeof off);
			if (a >= 0) printf("accepted?\n");
			else printf("error: %s waited>=150ms=%d\n", strerror(saved), ms >= 150);
		} else if (!strcmp(op, "efault")) {
			// an address buffer that cannot be written: EFAULT, and the connection (taken
			// from the queue, as the kernel's accept takes it) is reset
			int c = client(1, NULL);
			socklen_t l = 16;
			int a = accept(lfd, (struct sockaddr *)8, &l);
			int saved = errno;
			if (a >= 0) { printf("accepted?\n"); close(a); close(c); goto next; }
			printf("error: %s client=%s", strerror(saved), reset(c));
			close(c);
			printf(" next=%s\n", next());
		} else if (!strcmp(op, "emfile")) {
			// a full fd table: EMFILE, the connection reset; then accept works again
			int c = client(1, NULL);
			struct rlimit old, lim;
			getrlimit(RLIMIT_NOFILE, &old);
			lim = old;
			lim.rlim_cur = 64;
			setrlimit(RLIMIT_NOFILE, &lim);
			int fds[64], n = 0;
			for (int d; n < 64 && (d = dup(0)) >= 0;) fds[n++] = d;
			struct sockaddr_in sa;
			socklen_t l = sizeof sa;
			int a = accept(lfd, (struct sockaddr *)&sa, &l);
			int saved = errno;
			for (int k = 0; k < n; k++) close(fds[k]);
			setrlimit(RLIMIT_NOFILE, &old);
			if (a >= 0) { printf("accepted?\n"); close(a); close(c); goto next; }
			printf("error: %s client=%s", strerror(saved), reset(c));
			close(c);
			printf(" next=%s\n", next());
		} else if (!strcmp(op, "sigaccept")) {
			// a handled signal (no SA_RESTART) while accept waits: EINTR
			struct sigaction sa = {0};
			sa.sa_handler = on_usr1;
			sigaction(SIGUSR1, &sa, NULL);
			usr1 = 0;
			ready();
			struct sockaddr_in pa;
			socklen_t l = sizeof pa;
			int a = accept(lfd, (struct sockaddr *)&pa, &l);
			if (a >= 0) printf("accepted?\n"); else printf("error: %s handled=%d\n", strerror(errno), usr1);
		} else if (!strcmp(op, "sigacceptrestart")) {
			// with SA_RESTART: the handler runs (and connects), accept goes on and gets it
			struct sigaction sa = {0};
			sa.sa_handler = on_usr1_connect;
			sa.sa_flags = SA_RESTART;
			sigaction(SIGUSR1, &sa, NULL);
			usr1 = 0;
			ready();
			struct sockaddr_in pa;
			socklen_t l = sizeof pa;
			int a = accept(lfd, (struct sockaddr *)&pa, &l);
			if (a < 0) FAIL();
			printf("peer=%s handled=%d\n", ip(&pa), usr1);
			close(a);
			close(sig_client);
		} else if (!strcmp(op, "blockaccept")) {
			// a blocking accept that waits until the test delivers a connection
			ready();
			struct sockaddr_in pa;
			socklen_t l = sizeof pa;
			int a = accept(lfd, (struct sockaddr *)&pa, &l);
			if (a < 0) FAIL();
			printf("peer=%s:%d\n", ip(&pa), ntohs(pa.sin_port));
			close(a);
		} else if (!strcmp(op, "threads")) {
			// four threads in a blocking accept on the listener, 200 connections in bursts
			// of 50: each is accepted once, by one of them, with its client's address
			pthread_t th[4];
			served = 0;
			for (int k = 0; k < 4; k++) pthread_create(&th[k], NULL, acceptor, NULL);
			int ok = 0;
			for (int batch = 0; batch < 4; batch++) {
				int cs[50];
				for (int k = 0; k < 50; k++) {
					cs[k] = client(1, NULL);
					write(cs[k], "c", 1);
				}
				for (int k = 0; k < 50; k++) {
					char b = 0;
					struct timeval tv = {10, 0};
					setsockopt(cs[k], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
					ok += read(cs[k], &b, 1) == 1 && b == 'x';
					close(cs[k]);
				}
			}
			for (int k = 0; k < 4; k++) {
				int c = client(1, NULL);
				write(c, "q", 1);
				close(c);
			}
			for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
			printf("answered=%d served=%d\n", ok, (int)served);
		} else if (!strcmp(op, "close")) {
			// the listener closed: the test checks that nothing listens, then SIGUSR2
			struct sigaction sa = {0};
			sa.sa_handler = on_usr2;
			sigaction(SIGUSR2, &sa, NULL);
			close(lfd);
			ready();
			while (!done) usleep(10000);
			printf("ok\n");
		} else {
			printf("unknown op\n");
		}
	next:;
	}
	return 0;
}
