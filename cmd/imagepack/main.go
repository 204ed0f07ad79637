// Command imagepack packs local files into a container image archive that
// `ctr -n k8s.io images import` loads, so kwarp's agent and test workload
// images are built without a registry or a docker engine.
//
// Usage:
//
//	imagepack -o OUT.tar -ref NAME:TAG [-entrypoint /path] [-cmd ARG]...
//	    [-env KEY=VALUE]... [-workdir DIR] [-dir PATH[:MODE]]... [-libs] [-xtables]
//	    SRC[:DST] ...
//
// DST defaults to "/" + the base name of SRC; the last ':' separates them.
// -libs adds the shared libraries and dynamic loader each SRC needs (via
// ldd), so dynamically linked programs run in the otherwise empty image.
// -xtables adds this machine's iptables (imagepack.Xtables), as the agent image carries it.
//
// Exit status is 2 for usage errors and 1 for any other failure; on failure
// OUT.tar is left as it was.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kwarp-dev/kwarp/internal/imagepack"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("imagepack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out        = fs.String("o", "", "output archive `file` (docker-archive tar)")
		ref        = fs.String("ref", "", "image reference `name:tag` (tag required, not latest)")
		entrypoint = fs.String("entrypoint", "", "entrypoint program `path` in the image")
		workdir    = fs.String("workdir", "", "working `dir`ectory in the image")
		libs       = fs.Bool("libs", false, "also pack the shared libraries and loader each SRC needs (ldd)")
		xtables    = fs.Bool("xtables", false, "also pack this machine's iptables binaries and extensions (the agent's)")
		cmd, env   listFlag
		dirs       listFlag
	)
	fs.Var(&cmd, "cmd", "default argument `arg` (repeatable, in order)")
	fs.Var(&env, "env", "environment `KEY=VALUE` (repeatable; PATH defaults to "+
		strings.TrimPrefix(imagepack.DefaultPath, "PATH=")+")")
	fs.Var(&dirs, "dir", "empty directory `PATH[:MODE]` to create, e.g. /tmp:1777 (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: imagepack -o OUT.tar -ref NAME:TAG [flags] SRC[:DST] ...\n\n"+
			"Packs files into a single-layer image archive for `ctr -n k8s.io images import`.\n"+
			"DST defaults to /BASENAME(SRC).\n\nflags:\n")
		fs.PrintDefaults()
	}

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "imagepack: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	if *out == "" {
		return usageErr("-o is required")
	}
	if *ref == "" {
		return usageErr("-ref is required")
	}
	if fs.NArg() == 0 {
		return usageErr("no SRC files given")
	}

	var files []imagepack.File
	for _, arg := range fs.Args() {
		f, err := parseFileArg(arg)
		if err != nil {
			return usageErr("%v", err)
		}
		files = append(files, f)
	}

	spec := imagepack.Spec{
		Ref:        *ref,
		Cmd:        cmd,
		Env:        env,
		WorkingDir: *workdir,
		Dirs:       dirs,
	}
	if *entrypoint != "" {
		spec.Entrypoint = []string{*entrypoint}
	}
	if *xtables {
		xt, err := imagepack.Xtables()
		if err != nil {
			fmt.Fprintf(stderr, "imagepack: %v\n", err)
			return 1
		}
		files = append(files, xt...)
	}
	if *libs {
		var err error
		if files, err = imagepack.WithLibraries(files); err != nil {
			fmt.Fprintf(stderr, "imagepack: %v\n", err)
			return 1
		}
	}
	spec.Files = files

	if err := writeFile(*out, spec); err != nil {
		fmt.Fprintf(stderr, "imagepack: %v\n", err)
		return 1
	}
	return 0
}

// parseFileArg splits SRC[:DST] at the last ':'; sources containing ':'
// therefore need an explicit DST.
func parseFileArg(arg string) (imagepack.File, error) {
	src, dst := arg, ""
	if i := strings.LastIndexByte(arg, ':'); i >= 0 {
		src, dst = arg[:i], arg[i+1:]
		if dst == "" {
			return imagepack.File{}, fmt.Errorf("%q: empty DST after ':'", arg)
		}
	}
	if src == "" {
		return imagepack.File{}, fmt.Errorf("%q: empty SRC", arg)
	}
	if dst == "" {
		dst = "/" + filepath.Base(src)
	}
	return imagepack.File{Src: src, Dst: dst}, nil
}

// writeFile writes through a temp file and renames it into place, so a
// failed run never leaves a truncated archive that make would treat as
// up to date.
func writeFile(out string, spec imagepack.Spec) (err error) {
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := imagepack.Write(tmp, spec); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
