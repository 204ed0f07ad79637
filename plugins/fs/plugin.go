package fs

import (
	"context"
	"fmt"
	"path"
	"time"

	"golang.org/x/sys/unix"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/glob"
)

// Version of the built-in fs plugin; it ships with kwarp.
const Version = "1"

// Modes of the fs block.
const (
	ModeLocal              = "local"
	ModeLocalWithOverrides = "localwithoverrides"
	ModeRead               = "read"
	ModeWrite              = "write"
	DefaultMode            = ModeRead
)

// DefaultLocal are served by this machine whatever the mode: the system and runtimes a local
// program is built from (its binary, libraries, interpreters), the kernel's views, scratch
// space, and the developer's own tree (the working directory and home are added per session).
var DefaultLocal = []string{
	"/proc/**", "/sys/**", "/dev/**", "/tmp/**", "/var/tmp/**", "/run/**",
	"/usr/**", "/lib/**", "/lib32/**", "/lib64/**", "/libx32/**", "/bin/**", "/sbin/**",
	"/opt/**", "/nix/**", "/snap/**", "/var/lib/**", "/var/cache/**",
	"/etc/ld.so.*", "/etc/ld.so.conf.d/**", "/etc/passwd", "/etc/group", "/etc/shadow",
	"/etc/nsswitch.conf", "/etc/localtime", "/etc/timezone", "/etc/locale.*", "/etc/ssl/**",
	"/etc/ca-certificates/**", "/etc/pki/**", "/etc/alternatives/**", "/etc/java*/**",
	"/etc/python*/**", "/etc/fonts/**", "/etc/mime.types", "/etc/gai.conf", "/etc/host.conf",
}

// DefaultRemote are the kubelet's files: they describe the pod, so they come from it whenever
// the mode reads anything remote.
var DefaultRemote = []string{
	"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/var/run/secrets/**", "/run/secrets/**",
}

// CredentialsNotFound are, under the user's home, credentials the local program must not pick
// up instead of the pod's own identity; the process sees them as absent unless the mode is local.
var CredentialsNotFound = []string{".aws/**", ".azure/**", ".config/gcloud/**", ".kube/**", ".docker/config.json"}

// Plugin is the built-in files plugin.
type Plugin struct {
	cfg    Config
	rules  sdk.FsRules
	rw, ro glob.Set
	agent  agentv1.FsClient
}

// New returns the plugin, unconfigured.
func New() *Plugin { return &Plugin{} }

// Info names the plugin and its block.
func (p *Plugin) Info() sdk.Info {
	return sdk.Info{Name: "fs", Version: Version, Blocks: map[string]any{"fs": Schema}}
}

// Configure builds the rule table from the block, the mode and the defaults.
func (p *Plugin) Configure(_ context.Context, c sdk.Config) (sdk.Rules, error) {
	cfg := Config{}
	if b, ok := c.Blocks["fs"]; ok {
		var err error
		if cfg, err = DecodeConfig(b); err != nil {
			return sdk.Rules{}, err
		}
	}
	if cfg.Mode == "" {
		cfg.Mode = DefaultMode
	}
	p.cfg = cfg
	var notes []string
	if c.Session.Targetless {
		// nothing remote to read: every file is local (the core tells the user once)
		cfg.Mode = ModeLocal
	}
	p.rules = BuildRules(cfg, c.Session.Home, c.Session.Workdir)
	var err error
	if p.rw, err = glob.CompileAll(glob.Path, cfg.ReadWrite); err != nil {
		return sdk.Rules{}, fmt.Errorf("fs.read_write: %w", err)
	}
	if p.ro, err = glob.CompileAll(glob.Path, cfg.ReadOnly); err != nil {
		return sdk.Rules{}, fmt.Errorf("fs.read_only: %w", err)
	}
	if c.Agent != nil {
		p.agent = agentv1.NewFsClient(c.Agent)
	}
	return sdk.Rules{Tables: map[string]any{"fs": p.rules}, Notes: notes}, nil
}

// BuildRules is the table for a configuration. Order decides: the user's globs first (they win
// over every default), then credentials under the home (not found), the kubelet's files
// (remote), the system and the developer's own tree (local), then the mode's default.
func BuildRules(cfg Config, home, workdir string) sdk.FsRules {
	r := sdk.FsRules{Mode: cfg.Mode, Default: sdk.RouteRemote}
	if cfg.Mode == ModeLocal {
		r.Default = sdk.RouteLocal
		return r
	}
	if cfg.Mode == ModeLocalWithOverrides {
		r.Default = sdk.RouteLocal
	}
	add := func(route string, globs ...string) {
		for _, g := range globs {
			r.Rules = append(r.Rules, sdk.FsRule{Glob: g, Route: route})
		}
	}
	add(sdk.RouteNotFound, cfg.NotFound...)
	add(sdk.RouteLocal, cfg.Local...)
	add(sdk.RouteRemote, cfg.ReadWrite...)
	add(sdk.RouteRemote, cfg.ReadOnly...)
	if home != "" && home != "/" {
		for _, c := range CredentialsNotFound {
			add(sdk.RouteNotFound, path.Join(glob.Escape(home), c))
		}
	}
	add(sdk.RouteRemote, DefaultRemote...)
	add(sdk.RouteLocal, DefaultLocal...)
	for _, dir := range []string{home, workdir} {
		if dir != "" && dir != "/" {
			add(sdk.RouteLocal, glob.Escape(dir), path.Join(glob.Escape(dir), "**"))
			// realpath and friends lstat every ancestor of a local path
			for d := path.Dir(dir); d != "/"; d = path.Dir(d) {
				add(sdk.RouteLocal, glob.Escape(d))
			}
		}
	}
	return r
}

// Open decides an open of a remote path. The content is fetched by the core, not here.
func (p *Plugin) Open(ctx context.Context, name string, flags int, mode uint32) (sdk.OpenDecision, error) {
	fi, errno, err := p.Stat(ctx, name, false)
	if err != nil {
		return sdk.OpenDecision{}, err
	}
	wants := flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_TRUNC|unix.O_APPEND) != 0
	creates := flags&unix.O_CREAT != 0
	writable := p.cfg.Mode == ModeWrite || p.readWrite(name)
	switch {
	case errno == int(unix.ENOENT) && creates:
		if writable {
			return sdk.OpenDecision{Action: sdk.OpenWrite}, nil
		}
		// read mode: a file the program creates is its own, on this machine
		return sdk.OpenDecision{Action: sdk.OpenLocal}, nil
	case errno != 0:
		return sdk.OpenDecision{Errno: errno}, nil
	case fi.Mode&unix.S_IFMT == unix.S_IFDIR:
		if wants {
			return sdk.OpenDecision{Errno: int(unix.EISDIR)}, nil
		}
		return sdk.OpenDecision{Action: sdk.OpenReadDir, Info: fi}, nil
	case flags&unix.O_DIRECTORY != 0:
		return sdk.OpenDecision{Errno: int(unix.ENOTDIR)}, nil
	case creates && flags&unix.O_EXCL != 0:
		return sdk.OpenDecision{Errno: int(unix.EEXIST)}, nil
	case wants && writable:
		return sdk.OpenDecision{Action: sdk.OpenWrite, Info: fi}, nil
	case wants && p.cfg.Mode == ModeRead && !p.readOnly(name):
		// read mode writes locally, as the peer's users expect
		return sdk.OpenDecision{Action: sdk.OpenLocal}, nil
	case wants:
		return sdk.OpenDecision{Errno: int(unix.EROFS)}, nil
	}
	return sdk.OpenDecision{Action: sdk.OpenRead, Info: fi}, nil
}

func (p *Plugin) readWrite(name string) bool { return p.rw.Match(name) }
func (p *Plugin) readOnly(name string) bool  { return p.ro.Match(name) }

// Stat asks the agent.
func (p *Plugin) Stat(ctx context.Context, name string, noFollow bool) (sdk.FileInfo, int, error) {
	if p.agent == nil {
		return sdk.FileInfo{}, int(unix.ENOENT), nil
	}
	resp, err := p.agent.Stat(ctx, &agentv1.StatRequest{Path: name, NoFollow: noFollow})
	if err != nil {
		return sdk.FileInfo{}, 0, fmt.Errorf("stat %s in the target: %w", name, err)
	}
	return InfoFromAgent(resp.Info), int(resp.Errno), nil
}

// Readlink asks the agent.
func (p *Plugin) Readlink(ctx context.Context, name string) (string, int, error) {
	if p.agent == nil {
		return "", int(unix.ENOENT), nil
	}
	resp, err := p.agent.ReadLink(ctx, &agentv1.ReadLinkRequest{Path: name})
	if err != nil {
		return "", 0, fmt.Errorf("readlink %s in the target: %w", name, err)
	}
	return resp.Target, int(resp.Errno), nil
}

// Access asks the agent; write access to a read-only path is EROFS whatever the pod allows.
func (p *Plugin) Access(ctx context.Context, name string, mode uint32) (int, error) {
	if p.agent == nil {
		return int(unix.ENOENT), nil
	}
	resp, err := p.agent.Access(ctx, &agentv1.AccessRequest{Path: name, Mode: mode})
	if err != nil {
		return 0, fmt.Errorf("access %s in the target: %w", name, err)
	}
	if resp.Errno == 0 && mode&unix.W_OK != 0 && p.readOnly(name) && !p.readWrite(name) {
		return int(unix.EROFS), nil
	}
	return int(resp.Errno), nil
}

// InfoFromAgent converts the agent's stat to the SDK's.
func InfoFromAgent(i *agentv1.FileInfo) sdk.FileInfo {
	if i == nil {
		return sdk.FileInfo{}
	}
	return sdk.FileInfo{Mode: i.Mode, Size: i.Size, UID: i.Uid, GID: i.Gid, Nlink: i.Nlink, Ino: i.Ino, Dev: i.Dev,
		Rdev: i.Rdev, Blksize: i.Blksize, Blocks: i.Blocks, Atime: time.Unix(0, i.AtimeNs),
		Mtime: time.Unix(0, i.MtimeNs), Ctime: time.Unix(0, i.CtimeNs)}
}
