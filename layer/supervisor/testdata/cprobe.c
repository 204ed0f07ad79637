// cprobe is the glibc test program for the supervisor tests: each argument "op:arg[:arg2]"
// performs one file operation through libc and prints one line "op:arg[:arg2] result".
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void print_fd(int fd) {
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n < 0) { printf("read error: %s\n", strerror(errno)); return; }
	buf[n] = 0;
	for (char *c = buf; *c; c++) if (*c == '\n') *c = '|';
	printf("%s\n", buf);
}

static volatile int alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_term(int sig) { (void)sig; _exit(42); }

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		char *op = strdup(argv[i]);
		char *arg = strchr(op, ':');
		char *arg2 = NULL;
		if (arg) { *arg++ = 0; arg2 = strchr(arg, ':'); if (arg2) *arg2++ = 0; } else arg = "";
		printf("%s ", argv[i]);
		if (!strcmp(op, "open")) {
			int fd = open(arg, O_RDONLY | O_CLOEXEC);
			if (fd < 0) { printf("error: %s\n", strerror(errno)); continue; }
			int fl = fcntl(fd, F_GETFD);
			printf("cloexec=%d ", (fl & FD_CLOEXEC) != 0);
			print_fd(fd);
			close(fd);
		} else if (!strcmp(op, "opennc")) {
			int fd = open(arg, O_RDONLY);
			if (fd < 0) { printf("error: %s\n", strerror(errno)); continue; }
			printf("cloexec=%d ", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
			print_fd(fd);
			close(fd);
		} else if (!strcmp(op, "openat2")) {
			struct { unsigned long long flags, mode, resolve; } how = {O_RDONLY | O_CLOEXEC, 0, 0};
			int fd = syscall(437 /* openat2 */, AT_FDCWD, arg, &how, sizeof how);
			if (fd < 0) { printf("error: %s\n", strerror(errno)); continue; }
			printf("cloexec=%d ", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
			print_fd(fd);
			close(fd);
		} else if (!strcmp(op, "creat")) {
			int fd = creat(arg, 0644);
			if (fd < 0) { printf("error: %s\n", strerror(errno)); continue; }
			printf("fd\n");
			close(fd);
		} else if (!strcmp(op, "fchdir")) {
			// fchdir:DIR:NAME — fchdir into an fd of DIR, then open NAME relative to the cwd
			// and by the absolute path getcwd() gives
			int dfd = open(arg, O_RDONLY | O_DIRECTORY);
			if (dfd < 0 || fchdir(dfd) < 0) { printf("error: %s\n", strerror(errno)); continue; }
			char cwd[4096], abs[8192];
			if (!getcwd(cwd, sizeof cwd)) { printf("error: getcwd: %s\n", strerror(errno)); continue; }
			snprintf(abs, sizeof abs, "%s/%s", cwd, arg2);
			int fd = open(arg2, O_RDONLY);
			if (fd < 0) { printf("error: relative: %s\n", strerror(errno)); continue; }
			char line[256];
			ssize_t n = read(fd, line, sizeof line - 1);
			line[n > 0 ? n : 0] = 0;
			line[strcspn(line, "\n")] = 0;
			printf("relative=%s ", line);
			close(fd);
			fd = open(abs, O_RDONLY);
			if (fd < 0) { printf("error: absolute: %s\n", strerror(errno)); continue; }
			printf("absolute=");
			print_fd(fd);
			close(fd); close(dfd);
			chdir("/");
		} else if (!strcmp(op, "fopen")) {
			FILE *f = fopen(arg, "r");
			if (!f) { printf("error: %s\n", strerror(errno)); continue; }
			char line[256];
			if (fgets(line, sizeof line, f)) { line[strcspn(line, "\n")] = 0; printf("%s\n", line); } else printf("empty\n");
			fclose(f);
		} else if (!strcmp(op, "stat") || !strcmp(op, "lstat")) {
			struct stat st;
			int r = !strcmp(op, "stat") ? stat(arg, &st) : lstat(arg, &st);
			if (r < 0) { printf("error: %s\n", strerror(errno)); continue; }
			printf("mode=%o size=%lld uid=%u mtime=%lld\n", st.st_mode, (long long)st.st_size, st.st_uid, (long long)st.st_mtime);
		} else if (!strcmp(op, "statx")) {
			struct statx stx;
			if (statx(AT_FDCWD, arg, 0, STATX_SIZE | STATX_MODE | STATX_TYPE | STATX_MTIME, &stx) < 0) { printf("error: %s\n", strerror(errno)); continue; }
			printf("mode=%o size=%llu mtime=%lld has_size=%d has_ino=%d\n", stx.stx_mode, (unsigned long long)stx.stx_size,
			       (long long)stx.stx_mtime.tv_sec, (stx.stx_mask & STATX_SIZE) != 0, (stx.stx_mask & STATX_INO) != 0);
		} else if (!strcmp(op, "readlink")) {
			char buf[256];
			ssize_t n = readlink(arg, buf, arg2 ? (size_t)atoi(arg2) : sizeof buf);
			if (n < 0) { printf("error: %s\n", strerror(errno)); continue; }
			printf("%.*s n=%zd\n", (int)n, buf, n);
		} else if (!strcmp(op, "readdir")) {
			DIR *d = opendir(arg);
			if (!d) { printf("error: %s\n", strerror(errno)); continue; }
			char *names[64]; int n = 0;
			struct dirent *e;
			while ((e = readdir(d)) && n < 64) if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
			closedir(d);
			qsort(names, n, sizeof names[0], cmp);
			for (int j = 0; j < n; j++) printf("%s%s", j ? "," : "", names[j]);
			printf("\n");
		} else if (!strcmp(op, "access")) {
			if (access(arg, R_OK) < 0) printf("error: %s\n", strerror(errno)); else printf("ok\n");
		} else if (!strcmp(op, "openat")) {
			// openat:DIR:NAME — NAME relative to an fd of DIR
			int dfd = open(arg, O_RDONLY | O_DIRECTORY);
			if (dfd < 0) { printf("error: dir: %s\n", strerror(errno)); continue; }
			int fd = openat(dfd, arg2, O_RDONLY);
			if (fd < 0) { printf("error: %s\n", strerror(errno)); close(dfd); continue; }
			struct stat st;
			if (fstatat(dfd, arg2, &st, 0) < 0) printf("fstatat error: %s ", strerror(errno));
			else printf("size=%lld ", (long long)st.st_size);
			print_fd(fd);
			close(fd); close(dfd);
		} else if (!strcmp(op, "cdread")) {
			// cdread:DIR:REL — chdir to DIR, then open REL relative to the cwd
			if (chdir(arg) < 0) { printf("error: chdir: %s\n", strerror(errno)); continue; }
			int fd = open(arg2, O_RDONLY);
			if (fd < 0) { printf("error: %s\n", strerror(errno)); continue; }
			print_fd(fd);
			close(fd);
		} else if (!strcmp(op, "wait")) {
			char line[64];
			printf("waiting\n");
			if (!fgets(line, sizeof line, stdin)) { printf("eof\n"); }
			printf("resumed\n");
		} else if (!strcmp(op, "alarmopen")) {
			// a 2 ms interval timer interrupts the trapped open again and again
			struct sigaction sa = {0};
			sa.sa_handler = on_alarm;
			sa.sa_flags = SA_RESTART;
			sigaction(SIGALRM, &sa, NULL);
			struct itimerval it = {{0, 2000}, {0, 2000}};
			setitimer(ITIMER_REAL, &it, NULL);
			int fd = open(arg, O_RDONLY);
			int saved = errno;
			struct itimerval off = {0};
			setitimer(ITIMER_REAL, &off, NULL);
			if (fd < 0) { printf("error: %s\n", strerror(saved)); continue; }
			printf("alarms>0=%d ", alarms > 0);
			print_fd(fd);
			close(fd);
		} else if (!strcmp(op, "termopen")) {
			// a SIGTERM handler that exits 42: the signal is handled, so not fatal to the kernel
			struct sigaction sa = {0};
			sa.sa_handler = on_term;
			sigaction(SIGTERM, &sa, NULL);
			int fd = open(arg, O_RDONLY);
			printf("open returned %d (%s)\n", fd, fd < 0 ? strerror(errno) : "ok");
		} else if (!strcmp(op, "iouring")) {
			char params[120] = {0};
			long r = syscall(425 /* io_uring_setup */, 1, params);
			if (r < 0) printf("error: %s\n", strerror(errno)); else printf("fd=%ld\n", r);
		} else if (!strcmp(op, "x32")) {
			long r = syscall(0x40000000 | 39 /* x32 getpid */);
			if (r < 0) printf("error: %s\n", strerror(errno)); else printf("pid=%ld\n", r);
		} else if (!strcmp(op, "int80")) {
#if defined(__x86_64__)
			long r;
			__asm__ volatile("int $0x80" : "=a"(r) : "a"(20 /* i386 getpid */) : "memory");
			printf("ret=%ld\n", r);
#else
			printf("skipped\n");
#endif
		} else {
			printf("unknown op\n");
		}
	}
	return 0;
}
