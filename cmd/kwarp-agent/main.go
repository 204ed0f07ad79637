// Command kwarp-agent is the agent a kwarp session runs in the cluster. It is built statically
// (CGO_ENABLED=0) so its image holds this one file and nothing else.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/kwarp-dev/kwarp/agent"
	"github.com/kwarp-dev/kwarp/logging"
	"github.com/kwarp-dev/kwarp/version"
)

func main() {
	fs := flag.NewFlagSet("kwarp-agent", flag.ContinueOnError)
	listen := fs.String("listen", ":7700", "address the gRPC server listens on")
	logLevel := fs.String("log-level", "", "log level (default warn; env "+logging.LevelEnv+")")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *showVersion {
		fmt.Print(version.String("kwarp-agent"))
		return
	}
	level, err := logging.Resolve(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kwarp-agent:", err)
		os.Exit(2)
	}
	log := logging.New(os.Stderr, level, "agent")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kwarp-agent: listen on %s: %v\n", *listen, err)
		os.Exit(1)
	}
	if err := agent.New(log).Serve(ctx, lis); err != nil {
		fmt.Fprintln(os.Stderr, "kwarp-agent:", err)
		os.Exit(1)
	}
}
