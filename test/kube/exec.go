package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/exec"
)

// Exec runs cmd in a container of a pod through the API server, as kubectl exec does, feeding it
// stdin if not nil, and returns what it wrote. container may be empty for a single-container
// pod. A command that exits non-zero returns an error that includes the exit code and stderr and
// wraps an exec.CodeExitError (errors.As finds it); stdout and stderr are returned either way.
func (e *Env) Exec(ctx context.Context, ns, pod, container string, cmd []string, stdin io.Reader) (stdout, stderr string, err error) {
	req := e.Client.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   cmd,
			Stdin:     stdin != nil,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)

	executor, err := e.newExecutor(req.URL())
	if err != nil {
		return "", "", fmt.Errorf("kube: exec %q in %s: %w", cmd, podRef(ns, pod, container), err)
	}
	var outBuf, errBuf bytes.Buffer
	err = executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &outBuf, Stderr: &errBuf})
	stdout, stderr = outBuf.String(), errBuf.String()
	if err != nil {
		return stdout, stderr, execError(cmd, podRef(ns, pod, container), stderr, err)
	}
	return stdout, stderr, nil
}

// newExecutor is kubectl's choice: WebSocket (the newer protocol, GET as RFC 6455 requires),
// falling back to SPDY (POST) against an API server or proxy that cannot upgrade to it.
func (e *Env) newExecutor(u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(e.Config, "GET", u.String())
	if err != nil {
		return nil, fmt.Errorf("websocket executor: %w", err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.Config, "POST", u)
	if err != nil {
		return nil, fmt.Errorf("spdy executor: %w", err)
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// execError says which command failed where, with its exit code when it ran and exited non-zero
// (otherwise it could not be started, or the stream broke), and its stderr.
func execError(cmd []string, where, stderr string, err error) error {
	msg := fmt.Sprintf("kube: exec %q in %s", cmd, where)
	var exitErr exec.CodeExitError
	if errors.As(err, &exitErr) {
		msg += fmt.Sprintf(": exit code %d", exitErr.Code)
	}
	if s := strings.TrimSpace(stderr); s != "" {
		msg += fmt.Sprintf(": stderr: %s", s)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

func podRef(ns, pod, container string) string {
	if container == "" {
		return fmt.Sprintf("pod %s/%s", ns, pod)
	}
	return fmt.Sprintf("pod %s/%s container %s", ns, pod, container)
}

// Logs returns the whole log of a container (container may be empty for a single-container pod).
func (e *Env) Logs(ctx context.Context, ns, pod, container string) (string, error) {
	raw, err := e.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("kube: logs of %s: %w", podRef(ns, pod, container), err)
	}
	return string(raw), nil
}
