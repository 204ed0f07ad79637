package kube

import (
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	"github.com/rs/zerolog"
	"k8s.io/klog/v2"
)

var klogOnce sync.Once

// RouteKlog sends client-go's log lines (klog) to log at debug and trace level instead of
// stderr. Left alone, client-go prints lines such as "an error occurred forwarding 7700 ->
// 7700" on the user's terminal, which belongs to the user's command; the failures that matter
// reach the user as kwarp's own errors. The first call wins: klog is process-global.
func RouteKlog(log zerolog.Logger) {
	klogOnce.Do(func() {
		klog.SetLogger(logr.New(&klogSink{log: log.With().Str("from", "client-go").Logger()}))
	})
}

// klogSink is a logr.LogSink writing to zerolog.
type klogSink struct {
	log    zerolog.Logger
	name   string
	values []any
}

func (s *klogSink) Init(logr.RuntimeInfo) {}

// Enabled keeps klog's verbose levels (V(2) and up: request traces) out unless at trace.
func (s *klogSink) Enabled(level int) bool {
	if level > 1 {
		return s.log.GetLevel() <= zerolog.TraceLevel
	}
	return s.log.GetLevel() <= zerolog.DebugLevel
}

func (s *klogSink) Info(level int, msg string, kv ...any) {
	ev := s.log.Trace()
	if level <= 1 {
		ev = s.log.Debug()
	}
	s.fields(ev, kv).Msg(msg)
}

func (s *klogSink) Error(err error, msg string, kv ...any) {
	s.fields(s.log.Debug().Err(err), kv).Msg(msg)
}

func (s *klogSink) WithValues(kv ...any) logr.LogSink {
	c := *s
	c.values = append(append([]any(nil), s.values...), kv...)
	return &c
}

func (s *klogSink) WithName(name string) logr.LogSink {
	c := *s
	if c.name != "" {
		name = c.name + "/" + name
	}
	c.name = name
	return &c
}

func (s *klogSink) fields(ev *zerolog.Event, kv []any) *zerolog.Event {
	if s.name != "" {
		ev = ev.Str("logger", s.name)
	}
	all := append(append([]any(nil), s.values...), kv...)
	for i := 0; i+1 < len(all); i += 2 {
		ev = ev.Interface(fmt.Sprint(all[i]), all[i+1])
	}
	return ev
}
