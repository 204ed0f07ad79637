package target

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		wantKind Kind
		wantName string
		wantErr  string // substring; "" = no error
	}{
		{"pod/sample-6df6c-x7k2p", KindPod, "sample-6df6c-x7k2p", ""},
		{"deploy/sample", KindDeployment, "sample", ""},
		{"deployment/sample", KindDeployment, "sample", ""},
		{"Deployment/sample", KindDeployment, "sample", ""},
		{"sts/db", KindStatefulSet, "db", ""},
		{"statefulset/db", KindStatefulSet, "db", ""},
		{"job/migrate", KindJob, "migrate", ""},
		{"cronjob/nightly", KindCronJob, "nightly", ""},
		{"rollout/checkout", KindRollout, "checkout", ""},
		{" deploy/sample ", KindDeployment, "sample", ""},
		{"", "", "", "it is empty"},
		{"sample", "", "", "did you mean pod/sample or deploy/sample"},
		{"deployments/sample", "", "", `unknown kind "deployments"`},
		{"po/sample", "", "", `unknown kind "po"`},
		{"svc/sample", "", "", `unknown kind "svc"`},
		{"deploy/", "", "", "the name is missing"},
		{"deploy/ns/sample", "", "", "the namespace goes in -n"},
		{"deploy/Sample", "", "", "not a valid object name"},
		{"deploy/sam_ple", "", "", "not a valid object name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			kind, name, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %s, %s; want an error with %q", tt.in, kind, name, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v is not ErrInvalid (the CLI's exit 2)", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q lacks %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), AcceptedKinds) {
					t.Errorf("error %q does not name the accepted kinds", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if kind != tt.wantKind || name != tt.wantName {
				t.Errorf("Parse(%q) = %s, %s; want %s, %s", tt.in, kind, name, tt.wantKind, tt.wantName)
			}
		})
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{"deployment": KindDeployment, "deploy": KindDeployment, "sts": KindStatefulSet, "rollout": KindRollout} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := ParseKind("service"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseKind(service) = %v; want ErrInvalid", err)
	}
}

func TestKindResource(t *testing.T) {
	tests := map[Kind]string{
		KindPod: "pods", KindDeployment: "deployments.apps", KindStatefulSet: "statefulsets.apps",
		KindJob: "jobs.batch", KindCronJob: "cronjobs.batch", KindRollout: "rollouts.argoproj.io",
	}
	for k, want := range tests {
		if got := k.Resource(); got != want {
			t.Errorf("%s.Resource() = %q, want %q", k, got, want)
		}
	}
}

func TestSplitContainerID(t *testing.T) {
	tests := []struct{ in, rt, id string }{
		{"containerd://0123abcd", "containerd", "0123abcd"},
		{"cri-o://ffee", "cri-o", "ffee"},
		{"0123abcd", "", "0123abcd"},
		{"", "", ""},
	}
	for _, tt := range tests {
		rt, id := splitContainerID(tt.in)
		if rt != tt.rt || id != tt.id {
			t.Errorf("splitContainerID(%q) = %q, %q; want %q, %q", tt.in, rt, id, tt.rt, tt.id)
		}
	}
}
