package pluginhost

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
)

// testPlugin is served by this test binary re-executed; its behaviour comes from env vars the
// host test sets, so the same binary can crash, crash once, or ask the agent.
type testPlugin struct{ agent agentv1.EnvClient }

func (p *testPlugin) Info() sdk.Info {
	return sdk.Info{Name: "testenv", Version: "1", Blocks: map[string]any{"env": map[string]string{"kind": "test"}}}
}

func (p *testPlugin) Configure(_ context.Context, c sdk.Config) (sdk.Rules, error) {
	if c.Agent != nil {
		p.agent = agentv1.NewEnvClient(c.Agent)
	}
	return sdk.Rules{Tables: map[string]any{"env": map[string]string{"blocks": string(c.Blocks["env"])}}}, nil
}

func (p *testPlugin) Compute(ctx context.Context, local []sdk.EnvVar) (sdk.EnvResult, error) {
	if marker := os.Getenv("TESTPLUGIN_CRASH_ONCE"); marker != "" {
		if _, err := os.Stat(marker); err != nil {
			os.WriteFile(marker, nil, 0o644)
			os.Exit(7)
		}
	}
	if os.Getenv("TESTPLUGIN_CRASH_ALWAYS") != "" {
		os.Exit(7)
	}
	out := sdk.EnvResult{Vars: local}
	if p.agent != nil {
		resp, err := p.agent.Get(ctx, &agentv1.GetEnvRequest{})
		if err != nil {
			return out, err
		}
		for _, v := range resp.Vars {
			out.Vars = append(out.Vars, sdk.EnvVar{Name: v.Name, Value: v.Value})
		}
	}
	return out, nil
}

// otherPlugin shares the process with testPlugin under ServeAll; its Query answers with the
// block it was configured with, so a test sees whether it was configured again after a restart.
type otherPlugin struct{ block []byte }

func (p *otherPlugin) Info() sdk.Info {
	return sdk.Info{Name: "testother", Version: "1", Blocks: map[string]any{"other": map[string]string{"kind": "test"}}}
}

func (p *otherPlugin) Configure(_ context.Context, c sdk.Config) (sdk.Rules, error) {
	p.block = c.Blocks["other"]
	return sdk.Rules{Tables: map[string]any{"other": "configured by testother"}}, nil
}

func (p *otherPlugin) Query(context.Context, string, []byte, bool) (sdk.DnsAnswer, error) {
	if p.block == nil {
		return sdk.DnsAnswer{}, errors.New("testother was not configured")
	}
	return sdk.DnsAnswer{Packet: p.block}, nil
}

func TestMain(m *testing.M) {
	switch os.Getenv("KWARP_PLUGINHOST_TEST_SERVE") {
	case "1":
		sdk.Serve(&testPlugin{})
		return
	case "shared":
		sdk.ServeAll(&testPlugin{}, &otherPlugin{})
		return
	}
	// go-plugin's unix sockets go to $TMPDIR unless a Spec says otherwise, and a plugin that
	// crashes (as these tests make them) leaves its own there: keep them in a directory of
	// the test run's
	dir, err := os.MkdirTemp("", "kwarp-pluginhost-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("TMPDIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func sharedCommand(env ...string) func() *exec.Cmd {
	return func() *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), append(env, "KWARP_PLUGINHOST_TEST_SERVE=shared")...)
		return cmd
	}
}

func spec(env ...string) Spec {
	return Spec{Name: "testenv", Command: func() *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), append(env, "KWARP_PLUGINHOST_TEST_SERVE=1")...)
		return cmd
	}}
}

type fakeAgent struct{ agentv1.UnimplementedEnvServer }

func (fakeAgent) Get(context.Context, *agentv1.GetEnvRequest) (*agentv1.GetEnvResponse, error) {
	return &agentv1.GetEnvResponse{Vars: []*agentv1.EnvVar{{Name: "POD_ONLY", Value: "from-the-agent"}}}, nil
}

func agentConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	agentv1.RegisterEnvServer(s, fakeAgent{})
	go s.Serve(l)
	t.Cleanup(s.Stop)
	c, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func compute(ctx context.Context, p *Plugin) ([]*pluginv1.EnvVar, error) {
	var vars []*pluginv1.EnvVar
	err := p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		resp, err := c.Env().Compute(ctx, &pluginv1.ComputeRequest{Local: []*pluginv1.EnvVar{{Name: "L", Value: "1"}}})
		if err == nil {
			vars = resp.Vars
		}
		return err
	})
	return vars, err
}

func TestPluginReachesTheAgentThroughTheCore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Start(ctx, spec(), agentConn(t), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if info := p.Info(); info.Name != "testenv" || len(info.Blocks) != 1 || info.Blocks[0] != "env" || len(info.Features) != 1 {
		t.Fatalf("info = %+v", info)
	}
	resp, err := p.Configure(ctx, &pluginv1.ConfigureRequest{Blocks: map[string][]byte{"env": []byte(`{"a":1}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(resp.Rules["env"]), `{\"a\":1}`) {
		t.Fatalf("rules = %s", resp.Rules["env"])
	}
	vars, err := compute(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range vars {
		got[v.Name] = v.Value
	}
	if got["L"] != "1" || got["POD_ONLY"] != "from-the-agent" {
		t.Fatalf("compute = %v: want the local var and the agent's", got)
	}
}

func TestCrashedPluginIsRestartedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	marker := filepath.Join(t.TempDir(), "crashed")
	p, err := Start(ctx, spec("TESTPLUGIN_CRASH_ONCE="+marker), agentConn(t), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if _, err := p.Configure(ctx, &pluginv1.ConfigureRequest{}); err != nil {
		t.Fatal(err)
	}
	vars, err := compute(ctx, p)
	if err != nil {
		t.Fatalf("compute after one crash: %v (want a restart and a retry)", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the plugin never crashed; the test proves nothing")
	}
	// the restarted plugin was configured again: it still reaches the agent
	found := false
	for _, v := range vars {
		found = found || v.Name == "POD_ONLY"
	}
	if !found {
		t.Fatalf("restarted plugin lost its configuration: %v", vars)
	}
}

func TestPluginThatKeepsCrashingFailsTheSessionByName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Start(ctx, spec("TESTPLUGIN_CRASH_ALWAYS=1"), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	start := time.Now()
	_, err = compute(ctx, p)
	if !errors.Is(err, ErrPluginFailed) || !strings.Contains(err.Error(), "testenv") {
		t.Fatalf("compute on a crashing plugin = %v; want ErrPluginFailed naming it", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("took %s to give up", time.Since(start))
	}
	if _, err := compute(ctx, p); !errors.Is(err, ErrPluginFailed) {
		t.Fatalf("later call = %v; want the permanent failure", err)
	}
}

func TestPluginThatDoesNotStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Start(ctx, Spec{Name: "broken", Command: func() *exec.Cmd { return exec.Command("/bin/false") }}, nil, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("Start(/bin/false) = %v; want an error naming the plugin", err)
	}
}

func query(ctx context.Context, p *Plugin) (string, error) {
	var out string
	err := p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		resp, err := c.Dns().Query(ctx, &pluginv1.DnsQueryRequest{})
		if err == nil {
			out = string(resp.Packet)
		}
		return err
	})
	return out, err
}

func startShared(t *testing.T, ctx context.Context, env ...string) map[string]*Plugin {
	t.Helper()
	ps, err := StartShared(ctx, Spec{Command: sharedCommand(env...)}, []string{"testenv", "testother"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range ps {
			p.Stop()
		}
	})
	if len(ps) != 2 || ps["testenv"].proc != ps["testother"].proc {
		t.Fatalf("StartShared gave %d plugins, want two in one process", len(ps))
	}
	agent := agentConn(t)
	for name, block := range map[string]string{"testenv": "env", "testother": "other"} {
		p := ps[name]
		if info := p.Info(); info.Name != name {
			t.Fatalf("plugin %s: info names %q", name, info.Name)
		}
		p.SetAgent(agent)
		resp, err := p.Configure(ctx, &pluginv1.ConfigureRequest{Blocks: map[string][]byte{block: []byte(`"for ` + name + `"`)}})
		if err != nil {
			t.Fatalf("configure %s: %v", name, err)
		}
		if _, ok := resp.Rules[block]; !ok || len(resp.Rules) != 1 {
			t.Fatalf("configure %s answered the rules %v: another plugin of the process took the call", name, resp.Rules)
		}
	}
	return ps
}

func TestSharedProcessServesEachPluginByName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps := startShared(t, ctx)
	vars, err := compute(ctx, ps["testenv"])
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range vars {
		found = found || v.Name == "POD_ONLY"
	}
	if !found {
		t.Fatalf("testenv in the shared process did not reach the agent: %v", vars)
	}
	if got, err := query(ctx, ps["testother"]); err != nil || got != `"for testother"` {
		t.Fatalf("testother's query = %q, %v", got, err)
	}
	// testenv has no dns service: the call must not land on testother's
	if _, err := query(ctx, ps["testenv"]); err == nil {
		t.Fatal("a dns call for testenv was answered: the process routed it to another plugin")
	}
}

func TestSharedProcessCrashRestartsAndReconfiguresEveryPlugin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	marker := filepath.Join(t.TempDir(), "crashed")
	ps := startShared(t, ctx, "TESTPLUGIN_CRASH_ONCE="+marker)
	if _, err := compute(ctx, ps["testenv"]); err != nil {
		t.Fatalf("compute after one crash: %v (want a restart and a retry)", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the plugin never crashed; the test proves nothing")
	}
	// the other plugin of the process was restarted with it and configured again
	if got, err := query(ctx, ps["testother"]); err != nil || got != `"for testother"` {
		t.Fatalf("testother after the restart: %q, %v; want its configuration back", got, err)
	}
}

func TestSharedProcessThatKeepsCrashingFailsEveryPlugin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps := startShared(t, ctx, "TESTPLUGIN_CRASH_ALWAYS=1")
	_, err := compute(ctx, ps["testenv"])
	if !errors.Is(err, ErrPluginFailed) || !strings.Contains(err.Error(), "testenv (in one process with testenv, testother)") {
		t.Fatalf("compute on a crashing plugin = %v; want ErrPluginFailed naming it and its process", err)
	}
	if _, err := query(ctx, ps["testother"]); !errors.Is(err, ErrPluginFailed) {
		t.Fatalf("the other plugin of the failed process = %v; want the failure", err)
	}
}

func TestSocketsStayInTheSocketDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// short: a unix socket's path has room for 107 bytes (t.TempDir's names are long)
	dir, err := os.MkdirTemp("", "s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sp := spec()
	sp.SocketDir = dir
	p, err := Start(ctx, sp, agentConn(t), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	// the brokered agent connection adds the host's socket to the plugin's
	if _, err := p.Configure(ctx, &pluginv1.ConfigureRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := compute(ctx, p); err != nil {
		t.Fatal(err)
	}
	var sockets []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type()&os.ModeSocket != 0 {
			sockets = append(sockets, path)
		}
		return nil
	})
	if len(sockets) < 2 {
		t.Fatalf("sockets in the socket dir: %v; want the plugin's and the host's broker socket", sockets)
	}
	p.Stop()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("after Stop the socket dir still holds %v", left)
	}
}

func TestSocketDirFits(t *testing.T) {
	if !socketDirFits("/tmp/kwarp-session-123456-1234567890") {
		t.Error("a session directory under /tmp must fit")
	}
	if socketDirFits("/" + strings.Repeat("d", 80)) {
		t.Error("an 81-byte directory leaves no room for go-plugin's socket names")
	}
}
