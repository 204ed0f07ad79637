// Command goprobe is a static Go test program for the supervisor tests: each argument
// "op:path" performs one file operation through the Go standard library (raw syscalls, no libc)
// and prints one line "op:path result".
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
)

func main() {
	for _, arg := range os.Args[1:] {
		op, p, _ := strings.Cut(arg, ":")
		fmt.Printf("%s %s\n", arg, do(op, p))
	}
}

func do(op, p string) string {
	switch op {
	case "read":
		b, err := os.ReadFile(p)
		if err != nil {
			return errText(err)
		}
		return fmt.Sprintf("%q", b)
	case "stat", "lstat":
		stat := os.Stat
		if op == "lstat" {
			stat = os.Lstat
		}
		fi, err := stat(p)
		if err != nil {
			return errText(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return fmt.Sprintf("mode=%v size=%d uid=%d mtime=%d", fi.Mode(), fi.Size(), st.Uid, fi.ModTime().Unix())
	case "readlink":
		t, err := os.Readlink(p)
		if err != nil {
			return errText(err)
		}
		return t
	case "readdir":
		es, err := os.ReadDir(p)
		if err != nil {
			return errText(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		return strings.Join(names, ",")
	case "parallel":
		// Many goroutines, hence many threads (TIDs other than the process id), at once.
		var wg sync.WaitGroup
		errs := make(chan string, 200)
		want, err := os.ReadFile(p)
		if err != nil {
			return errText(err)
		}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					b, err := os.ReadFile(p)
					if err != nil {
						errs <- errText(err)
					} else if string(b) != string(want) {
						errs <- "content differs"
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			return e
		}
		return fmt.Sprintf("ok %d", len(want))
	case "concurrent":
		// concurrent:SLOW:FAST — read SLOW on one goroutine while FAST is read 20 times on
		// another; "fast done" is printed before waiting for SLOW.
		slow, fast, _ := strings.Cut(p, ":")
		done := make(chan string)
		go func() {
			b, err := os.ReadFile(slow)
			if err != nil {
				done <- errText(err)
				return
			}
			done <- fmt.Sprintf("%q", b)
		}()
		for range 20 {
			if _, err := os.ReadFile(fast); err != nil {
				return errText(err)
			}
		}
		fmt.Println("fast done")
		return "slow " + <-done
	case "access":
		if err := syscall.Access(p, 4 /* R_OK */); err != nil {
			return errText(err)
		}
		return "ok"
	}
	return "unknown op"
}

func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return "error: " + errno.Error()
	}
	return "error: " + err.Error()
}
