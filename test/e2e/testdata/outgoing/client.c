/* A C client for kwarp's outgoing tests: glibc's resolver (getaddrinfo reads the pod's
 * resolv.conf through kwarp) and plain sockets.
 *   client tcp HOST PORT   connect, print the first line the server sends
 *   client udp HOST PORT   sendto (unconnected) "ping", print the reply and whether it came
 *                          from the address sent to
 *   client resolve NAME    print the first IPv4 address
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct addrinfo *lookup(const char *host, const char *port, int type) {
	struct addrinfo hints = {0}, *res;
	hints.ai_family = AF_INET;
	hints.ai_socktype = type;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "getaddrinfo %s: %s\n", host, gai_strerror(rc));
		exit(2);
	}
	return res;
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: client tcp|udp HOST PORT | resolve NAME\n");
		return 2;
	}
	if (!strcmp(argv[1], "resolve")) {
		struct addrinfo *ai = lookup(argv[2], NULL, SOCK_STREAM);
		char buf[64];
		inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, buf, sizeof buf);
		printf("%s\n", buf);
		return 0;
	}
	int udp = !strcmp(argv[1], "udp");
	struct addrinfo *ai = lookup(argv[2], argv[3], udp ? SOCK_DGRAM : SOCK_STREAM);
	int fd = socket(ai->ai_family, ai->ai_socktype, 0);
	if (fd < 0) { perror("socket"); return 1; }
	char buf[512];
	if (udp) {
		if (sendto(fd, "ping", 4, 0, ai->ai_addr, ai->ai_addrlen) != 4) { perror("sendto"); return 1; }
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
		if (n < 0) { perror("recvfrom"); return 1; }
		buf[n] = 0;
		int same = from.sin_addr.s_addr == ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr &&
			from.sin_port == ((struct sockaddr_in *)ai->ai_addr)->sin_port;
		printf("%s from-sent-address=%s\n", buf, same ? "yes" : "no");
		return 0;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) { perror("connect"); return 1; }
	struct sockaddr_in peer;
	socklen_t pl = sizeof peer;
	if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0) { perror("getpeername"); return 1; }
	if (peer.sin_addr.s_addr != ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) {
		fprintf(stderr, "getpeername does not name the address connected to\n");
		return 1;
	}
	ssize_t n = 0, r;
	while (n < (ssize_t)sizeof buf - 1 && (r = read(fd, buf + n, 1)) == 1 && buf[n] != '\n') n++;
	buf[n] = 0;
	printf("%s\n", buf);
	return 0;
}
