// Command kwarp is the developer's CLI: it runs a local process in the context of a Kubernetes
// pod. The same binary also serves as the launcher and the built-in plugins when re-executed.
package main

import "github.com/kwarp-dev/kwarp/cli"

func main() { cli.Main() }
