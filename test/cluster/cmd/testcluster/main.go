// Command testcluster starts, stops and loads kwarp's local test cluster (the Makefile's
// cluster-* targets call it):
//
//	testcluster up                 start, or reuse, the cluster and the laptop namespace
//	testcluster down               stop it and remove everything it made
//	testcluster leftovers          list what of the cluster is still on the machine (exit 1 if any)
//	testcluster load [ARCHIVE...]  import image archives and the test workloads' image
//	testcluster env                print the export line for the admin kubeconfig
//	testcluster laptop CMD [ARG...]  run CMD in the laptop namespace with its kubeconfig
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kwarp-dev/kwarp/test/cluster"
	"github.com/kwarp-dev/kwarp/test/netns"
	"github.com/kwarp-dev/kwarp/test/workloads"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := cluster.DefaultConfig()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "[cluster] "+format+"\n", args...) }

	var err error
	switch os.Args[1] {
	case "up":
		err = cluster.Up(ctx, cfg, logf)
	case "down":
		err = cluster.Down(ctx, cfg, logf)
	case "leftovers":
		var left []string
		if left, err = cluster.Leftovers(ctx, cfg); err == nil && len(left) > 0 {
			err = fmt.Errorf("left behind by the test cluster:\n  %s", strings.Join(left, "\n  "))
		}
		if err == nil {
			logf("nothing of the test cluster is left on this machine")
		}
	case "load":
		for _, a := range os.Args[2:] {
			if err = cfg.LoadImage(ctx, a); err != nil {
				break
			}
			logf("loaded %s", a)
		}
		if err == nil {
			if err = workloads.Load(ctx, cfg); err == nil {
				logf("loaded %s", workloads.Image)
			}
		}
	case "env":
		fmt.Printf("export KUBECONFIG=%s\n", cfg.AdminKubeconfig())
	case "laptop":
		if len(os.Args) < 3 {
			usage()
		}
		ns := netns.NS{Name: cluster.LaptopNetns, Env: []string{"KUBECONFIG=" + cfg.LaptopKubeconfig()}}
		if !ns.Exists() {
			err = errors.New("the laptop namespace does not exist: run `make cluster-up` first")
			break
		}
		cmd := ns.Command(ctx, os.Args[2], os.Args[3:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		err = cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testcluster %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testcluster up|down|leftovers|load [ARCHIVE...]|env|laptop CMD [ARG...]")
	os.Exit(2)
}
