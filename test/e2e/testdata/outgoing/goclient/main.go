// Command goclient is a static Go client (CGO_ENABLED=0: Go's own resolver and net package)
// for kwarp's outgoing tests.
//
//	goclient tcp HOST PORT        print the first line the server sends
//	goclient udp HOST PORT        connected UDP: send "ping", print the reply
//	goclient udpfrom HOST PORT    unconnected UDP (WriteTo/ReadFrom); print the reply and
//	                              whether it came from the address sent to
//	goclient http URL             GET, print the body
//	goclient resolve NAME         print the first address
//	goclient parallel N HOST PORT N connections at once, each reads the first line; print the
//	                              distinct lines and the count
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func firstLine(c net.Conn) (string, error) {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(l), err
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: goclient MODE ARGS")
	}
	switch args[0] {
	case "tcp":
		c, err := net.DialTimeout("tcp", net.JoinHostPort(args[1], args[2]), 20*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		l, err := firstLine(c)
		if err != nil {
			return err
		}
		if got := c.RemoteAddr().(*net.TCPAddr).Port; strconv.Itoa(got) != args[2] {
			return fmt.Errorf("RemoteAddr port %d, want %s", got, args[2])
		}
		fmt.Println(l)
	case "udp":
		c, err := net.Dial("udp", net.JoinHostPort(args[1], args[2]))
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		fmt.Println(string(buf[:n]))
	case "udpfrom":
		to, err := net.ResolveUDPAddr("udp4", net.JoinHostPort(args[1], args[2]))
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.WriteTo([]byte("ping"), to); err != nil {
			return err
		}
		buf := make([]byte, 512)
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return err
		}
		same := "no"
		if from.IP.Equal(to.IP) && from.Port == to.Port {
			same = "yes"
		}
		fmt.Println(string(buf[:n]), "from-sent-address="+same)
	case "http":
		resp, err := http.Get(args[1])
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	case "resolve":
		addrs, err := net.DefaultResolver.LookupHost(context.Background(), args[1])
		if err != nil {
			return err
		}
		sort.Strings(addrs)
		fmt.Println(addrs[0])
	case "parallel":
		n, _ := strconv.Atoi(args[1])
		var mu sync.Mutex
		lines := map[string]int{}
		var errs []string
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", net.JoinHostPort(args[2], args[3]), 30*time.Second)
				var l string
				if err == nil {
					l, err = firstLine(c)
					c.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err.Error())
					return
				}
				lines[l]++
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return fmt.Errorf("%d of %d connections failed, first: %s", len(errs), n, errs[0])
		}
		for l, c := range lines {
			fmt.Printf("%s %d\n", l, c)
		}
	default:
		return fmt.Errorf("unknown mode %q", args[0])
	}
	return nil
}
