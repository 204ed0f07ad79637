#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

static void print_file_line(const char *path, const char *prefix) {
	FILE *f = fopen(path, "r");
	if (!f) { perror(path); exit(1); }
	char line[512];
	while (fgets(line, sizeof line, f)) {
		if (!prefix || strncmp(line, prefix, strlen(prefix)) == 0) { fputs(line, stdout); if (line[strlen(line)-1] != '\n') putchar('\n'); if (prefix) break; }
	}
	fclose(f);
}

int main(void) {
	const char *g = getenv("GREETING");
	printf("%s\n", g ? g : "(unset)");
	print_file_line("/etc/sample/app.conf", "marker=");
	print_file_line("/etc/hostname", NULL);
	print_file_line("/var/run/secrets/kubernetes.io/serviceaccount/namespace", NULL);
	struct stat st;
	if (stat("/etc/sample/app.conf", &st) != 0) { perror("stat"); return 1; }
	printf("size>0 %d\n", st.st_size > 0);
	DIR *d = opendir("/etc/sample");
	if (!d) { perror("opendir"); return 1; }
	struct dirent *e; int found = 0;
	while ((e = readdir(d))) if (strcmp(e->d_name, "app.conf") == 0) found = 1;
	closedir(d);
	printf("listed app.conf %d\n", found);
	return 0;
}
