// Command pause is the test cluster's sandbox ("pause") image: it holds a pod's namespaces open
// and waits for a signal. The real one comes from a registry this machine cannot reach.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
