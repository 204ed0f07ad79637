package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Problem classifies an API failure by what the developer has to do about it.
type Problem string

const (
	ProblemUnreachable  Problem = "unreachable"  // network, DNS, TLS: the server never answered
	ProblemUnauthorized Problem = "unauthorized" // 401: the kubeconfig's credentials
	ProblemForbidden    Problem = "forbidden"    // 403: RBAC (or admission) said no
	ProblemNotFound     Problem = "not found"
	ProblemOther        Problem = "other"
)

// APIError is a failed API call explained for a person: which server, which verb on which
// resource, and what to do. Err keeps the original so apierrors.IsForbidden and friends still
// work on it.
type APIError struct {
	Problem   Problem
	Server    string
	Verb      string // "list"
	Resource  string // "pods", "deployments.apps", "pods/portforward"
	Namespace string // "" for cluster-scoped calls
	Err       error
}

func (e *APIError) Unwrap() error { return e.Err }

func (e *APIError) Error() string {
	where := ""
	if e.Namespace != "" {
		where = fmt.Sprintf(" in namespace %q", e.Namespace)
	}
	switch e.Problem {
	case ProblemUnreachable:
		return fmt.Sprintf("cannot reach the API server at %s: %v; check that the cluster is up and that --context/--kubeconfig point at it (kubectl cluster-info)",
			orUnknown(e.Server), rootCause(e.Err))
	case ProblemUnauthorized:
		return fmt.Sprintf("the API server at %s rejected the kubeconfig's credentials (401 Unauthorized): log in again or check the context's user",
			orUnknown(e.Server))
	case ProblemForbidden:
		msg := statusMessage(e.Err)
		if !isRBACDenial(msg) {
			// An admission plugin (PodSecurity, a webhook) refused: a Role would not help.
			return fmt.Sprintf("forbidden: cannot %s %s%s: %s", e.Verb, e.Resource, where, msg)
		}
		return fmt.Sprintf("forbidden: cannot %s %s%s: %s; ask a cluster admin for a Role that allows %q on %q (`kwarp doctor` lists every permission kwarp needs)",
			e.Verb, e.Resource, where, msg, e.Verb, e.Resource)
	default:
		return fmt.Sprintf("%s %s%s: %v", e.Verb, e.Resource, where, e.Err)
	}
}

// Explain turns err from a call to server that tried to verb resource in namespace ns into an
// *APIError a developer can act on; nil for nil. It classifies err. Forbidden errors name the verb and resource the call used; when the
// caller does not know the resource, the StatusError's details (group and resource) fill it.
func Explain(server, verb, resource, ns string, err error) error {
	if err == nil {
		return nil
	}
	var already *APIError
	if errors.As(err, &already) {
		return err
	}
	e := &APIError{Problem: ProblemOther, Server: server, Verb: verb, Resource: resource, Namespace: ns, Err: err}
	switch {
	case apierrors.IsForbidden(err):
		e.Problem = ProblemForbidden
		if e.Resource == "" {
			e.Resource = detailsResource(err)
		}
	case apierrors.IsUnauthorized(err):
		e.Problem = ProblemUnauthorized
	case apierrors.IsNotFound(err):
		e.Problem = ProblemNotFound
	case isUnreachable(err):
		e.Problem = ProblemUnreachable
	}
	return e
}

// detailsResource is "resource.group" from a StatusError's details, as RBAC rules name it.
func detailsResource(err error) string {
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return ""
	}
	d := se.Status().Details
	if d == nil {
		return ""
	}
	if d.Group != "" {
		return d.Kind + "." + d.Group
	}
	return d.Kind
}

// statusMessage is the API server's own sentence ("pods is forbidden: User … cannot list
// resource "pods" …"), which names the user, better than anything kwarp could guess.
func statusMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Message != "" {
		return se.Status().Message
	}
	return err.Error()
}

// isRBACDenial tells the authorizer's refusal ("User "x" cannot list resource "pods"")
// from an admission plugin's ("violates PodSecurity …", "admission webhook … denied").
func isRBACDenial(msg string) bool {
	return strings.Contains(msg, " cannot ") && !strings.Contains(msg, "violates PodSecurity")
}

// isUnreachable reports errors where no HTTP answer came back: refused, timed out, no route,
// unknown host, TLS failure. A context deadline counts: the short first-contact timeout is
// how an unanswered SYN shows up.
func isUnreachable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Status == metav1.StatusFailure && status.Status().Code != 0 {
		return false
	}
	var netErr net.Error
	var urlErr *url.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.As(err, &dnsErr), errors.As(err, &opErr):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	case errors.As(err, &urlErr):
		return true
	}
	// client-go sometimes flattens the cause into text (rest.Result errors).
	msg := err.Error()
	for _, s := range []string{"connection refused", "i/o timeout", "no route to host", "no such host",
		"context deadline exceeded", "Client.Timeout exceeded", "tls: ", "x509: ", "EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// rootCause strips the url.Error wrapper ("Get \"https://…/version?timeout=5s\": …"), whose
// URL repeats the server the message already names.
func rootCause(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Err != nil {
		if errors.Is(urlErr.Err, context.DeadlineExceeded) {
			return errors.New("no answer within the timeout")
		}
		return urlErr.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("no answer within the timeout")
	}
	return err
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown server)"
	}
	return s
}
