// Command gocontext prints a pod's context with Go's own file I/O; the e2e tests build it with
// CGO_ENABLED=0 (a static binary that never goes through libc).
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	g, ok := os.LookupEnv("GREETING")
	if !ok {
		g = "(unset)"
	}
	fmt.Println(g)
	b, err := os.ReadFile("/etc/sample/app.conf")
	must(err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "marker=") {
			fmt.Println(l)
			break
		}
	}
	for _, f := range []string{"/etc/hostname", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"} {
		b, err := os.ReadFile(f)
		must(err)
		fmt.Println(strings.TrimSpace(string(b)))
	}
	fi, err := os.Stat("/etc/sample/app.conf")
	must(err)
	fmt.Println("size>0", b2i(fi.Size() > 0))
	ents, err := os.ReadDir("/etc/sample")
	must(err)
	found := false
	for _, e := range ents {
		found = found || e.Name() == "app.conf"
	}
	fmt.Println("listed app.conf", b2i(found))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
