// Command readloop times open+read+close of one file from inside the process, so that a
// benchmark can run it under `kwarp exec` and learn the cost of one remote file open without
// kwarp's session start in the figure.
//
//	readloop [-n 200] FILE
//
// It opens, reads to EOF and closes FILE once untimed (the first open may pay for connections
// that later ones reuse), then -n more times timed, each with raw system calls (openat, read,
// close: nothing else the Go runtime might add), and prints
//
//	size BYTES
//	ns/op NANOSECONDS
//
// It exits 1 when an open fails or the size changes between iterations.
package main

import (
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 200, "timed iterations")
	flag.Parse()
	if flag.NArg() != 1 || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: readloop [-n N] FILE")
		os.Exit(2)
	}
	path := flag.Arg(0)
	buf := make([]byte, 64<<10)
	size, err := once(path, buf)
	if err != nil {
		fail(err)
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		s, err := once(path, buf)
		if err != nil {
			fail(err)
		}
		if s != size {
			fail(fmt.Errorf("%s: read %d bytes, %d the first time", path, s, size))
		}
	}
	elapsed := time.Since(start)
	fmt.Printf("size %d\nns/op %d\n", size, elapsed.Nanoseconds()/int64(*n))
}

// once opens path, reads it to EOF into buf and closes it, returning the bytes read.
func once(path string, buf []byte) (int, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	total := 0
	for {
		m, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			syscall.Close(fd)
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		if m == 0 {
			break
		}
		total += m
	}
	if err := syscall.Close(fd); err != nil {
		return 0, fmt.Errorf("close %s: %w", path, err)
	}
	return total, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "readloop:", err)
	os.Exit(1)
}
