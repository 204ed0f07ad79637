/* dnsbench: glibc's resolver timed from inside the process, for BenchmarkOutgoing.
 *   dnsbench NAME N
 * One untimed getaddrinfo(NAME) (AF_UNSPEC, SOCK_STREAM: A and AAAA, the search list applied
 * as resolv.conf says), then N timed ones; prints "lookups N", "mean-ns", "p50-ns" and "p99-ns"
 * lines, as netbench dns and probe dnsbench do. Exits 1 when a lookup fails.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void lookup(const char *name) {
	struct addrinfo hints, *res;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(name, NULL, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "dnsbench: getaddrinfo %s: %s\n", name, gai_strerror(rc));
		exit(1);
	}
	freeaddrinfo(res);
}

static int cmp(const void *a, const void *b) {
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv) {
	int n = argc == 3 ? atoi(argv[2]) : 0;
	if (n < 1) {
		fprintf(stderr, "usage: dnsbench NAME N\n");
		return 2;
	}
	long long *lat = calloc(n, sizeof *lat), total = 0;
	lookup(argv[1]);
	for (int i = 0; i < n; i++) {
		long long t = now_ns();
		lookup(argv[1]);
		lat[i] = now_ns() - t;
		total += lat[i];
	}
	qsort(lat, n, sizeof *lat, cmp);
	/* nearest rank */
	int k50 = (n * 50 + 99) / 100 - 1, k99 = (n * 99 + 99) / 100 - 1;
	printf("lookups %d\nmean-ns %lld\np50-ns %lld\np99-ns %lld\n", n, total / n, lat[k50 < 0 ? 0 : k50],
	       lat[k99 < 0 ? 0 : k99]);
	return 0;
}
