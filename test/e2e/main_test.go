// Package e2e holds kwarp's end-to-end tests. They run against the real local cluster that
// test/cluster starts (reused when it runs), with the local side in the laptop network
// namespace, which reaches the API server and nothing else of the cluster.
//
//	go test ./test/e2e/ -run Laptop
package e2e

import (
	"testing"

	"github.com/kwarp-dev/kwarp/test/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
