package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kwarp-dev/kwarp/internal/imagepack"
	"github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/testenv"
)

// TestDynamicBinaryImage packs a dynamically linked Debian program with the libraries ldd
// lists, loads it, and runs it as a pod: the way real third-party servers (redis-server) reach
// the cluster without a registry.
func TestDynamicBinaryImage(t *testing.T) {
	ctx := kube.Context(t, 2*time.Minute)
	files, err := imagepack.WithLibraries([]imagepack.File{{Src: "/bin/ls", Dst: "/bin/ls"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("ldd found %d files for /bin/ls; want the program, libc and the loader", len(files))
	}
	ref := fmt.Sprintf("kwarp.test/ls:%d", time.Now().UnixNano())
	if err := testenv.Cluster.PackAndLoad(ctx, imagepack.Spec{Ref: ref, Entrypoint: []string{"/bin/ls"}, Files: files}); err != nil {
		t.Fatal(err)
	}
	ns := testenv.Env.NewNamespace(t, "image")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ls"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "ls", Image: ref, ImagePullPolicy: corev1.PullIfNotPresent,
				Args: []string{"-1", "/lib64", "/bin"}}},
		},
	}
	if _, err := testenv.Env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var phase corev1.PodPhase
	err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := testenv.Env.Client.CoreV1().Pods(ns).Get(ctx, "ls", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil || phase != corev1.PodSucceeded {
		t.Fatalf("pod running the packed /bin/ls: phase %s, err %v", phase, err)
	}
	logs, err := testenv.Env.Logs(ctx, ns, "ls", "ls")
	if err != nil {
		t.Fatal(err)
	}
	// the listing shows the image's own tree: the loader ldd named and the program itself
	for _, want := range []string{"ld-linux-x86-64.so.2", "ls"} {
		if !strings.Contains(logs, want) {
			t.Errorf("ls output lacks %q:\n%s", want, logs)
		}
	}
}
