package layer

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func inodeOf(t *testing.T, l *net.TCPListener) uint64 {
	t.Helper()
	raw, err := l.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) })
	if serr != nil {
		t.Fatal(serr)
	}
	return st.Ino
}

// TestListeningSockets: a listener is listed by its inode with its address while it
// listens, and no longer once closed.
func TestListeningSockets(t *testing.T) {
	tests := []struct{ network, addr string }{
		{"tcp4", "127.0.0.1:0"},
		{"tcp", ":0"},
		{"tcp6", "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.network+" "+tt.addr, func(t *testing.T) {
			l, err := net.Listen(tt.network, tt.addr)
			if err != nil {
				t.Skipf("listen: %v", err)
			}
			tl := l.(*net.TCPListener)
			ino := inodeOf(t, tl)
			want := tl.Addr().(*net.TCPAddr).AddrPort()
			want = netip.AddrPortFrom(want.Addr().Unmap(), want.Port())
			got, err := ListeningSockets()
			if err != nil {
				t.Fatal(err)
			}
			if ap, ok := got[ino]; !ok || ap != want {
				t.Errorf("inode %d: %v %v, want %v (listeners %v)", ino, ap, ok, want, got)
			}
			l.Close()
			got, err = ListeningSockets()
			if err != nil {
				t.Fatal(err)
			}
			if ap, ok := got[ino]; ok {
				t.Errorf("closed listener still listed: %v", ap)
			}
		})
	}
}

func TestListenerDial(t *testing.T) {
	tests := []struct {
		local  string
		v6only bool
		want   string
	}{
		{"0.0.0.0:80", false, "127.0.0.1:80"},
		{"[::]:80", false, "127.0.0.1:80"},
		{"[::]:80", true, "[::1]:80"},
		{"10.0.0.5:8080", false, "10.0.0.5:8080"},
		{"[fd00::5]:8080", true, "[fd00::5]:8080"},
		{"127.0.0.1:9", false, "127.0.0.1:9"},
	}
	for _, tt := range tests {
		l := Listener{Local: netip.MustParseAddrPort(tt.local), V6Only: tt.v6only}
		if got := l.Dial().String(); got != tt.want {
			t.Errorf("%s v6only=%v: Dial %s, want %s", tt.local, tt.v6only, got, tt.want)
		}
	}
}
