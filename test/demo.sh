#!/usr/bin/env bash
# `make demo`: the local cluster (already up), a sample workload, and a kwarp session against it
# from the laptop namespace — the side of a developer's machine that reaches only the API server.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
eval "$(bin/testcluster env)"
kubectl=$(ls "${KWARP_CACHE:-$HOME/.cache/kwarp}"/k8s-*/kubectl | head -1)
ns=kwarp-demo

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "deploying the sample workload into namespace $ns"
$kubectl create namespace $ns --dry-run=client -o yaml | $kubectl apply -f - >/dev/null
$kubectl -n $ns apply -f test/workloads/manifests/sample.yaml
$kubectl -n $ns rollout status deploy/sample --timeout=120s
pod=$($kubectl -n $ns get pod -l app=sample -o jsonpath='{.items[0].metadata.name}')
echo "target pod: $pod (containers: $($kubectl -n $ns get pod "$pod" -o jsonpath='{.spec.containers[*].name}'))"

say "what the pod has that this machine does not"
echo "env GREETING=$($kubectl -n $ns get pod "$pod" -o jsonpath='{.spec.containers[1].env[0].value}')"
echo "file /etc/sample/app.conf from ConfigMap sample-config:"
$kubectl -n $ns get configmap sample-config -o jsonpath='{.data.app\.conf}' | sed 's/^/    /'

say "the laptop namespace reaches the API server and nothing else"
bin/testcluster laptop bin/kwarp version
bin/testcluster laptop "$kubectl" -n $ns get pods
svc=$($kubectl -n $ns get svc sample -o jsonpath='{.spec.clusterIP}')
if bin/testcluster laptop timeout 3 bash -c "exec 3<>/dev/tcp/$svc/80" 2>/dev/null; then
  echo "unexpected: the laptop reached Service $svc directly" >&2; exit 1
fi
echo "Service sample at $svc: not reachable from the laptop (as on a developer's machine)"

say "a kwarp session: a local shell, run from the laptop, with the pod's context"
set -x
bin/testcluster laptop bin/kwarp exec -n $ns -t deploy/sample -- sh -c \
  'echo "GREETING=$GREETING"; grep marker /etc/sample/app.conf; echo "hostname: $(cat /etc/hostname)"'
set +x

say "the pod's incoming traffic: a request with x-kwarp-user: demo goes to a local server"
$kubectl -n $ns apply -f test/workloads/manifests/client.yaml >/dev/null
$kubectl -n $ns wait --for=condition=Ready pod/client --timeout=120s >/dev/null
www=$(mktemp -d)
echo "answered by the developer's machine" > "$www/hello.txt"
cat > "$www/kwarp.hcl" <<'HCL'
steal "http" "demo" {
  port = 8080
  match {
    header "x-kwarp-user" { exact = "demo" }
  }
}
HCL
set -x
bin/testcluster laptop bin/kwarp exec -n $ns -t deploy/sample -f "$www/kwarp.hcl" -- \
  python3 -m http.server 8080 --directory "$www" >/dev/null 2>&1 &
set +x
session=$!
for _ in $(seq 60); do
  if $kubectl -n $ns exec client -- /probe http -H "x-kwarp-user: demo" http://sample/hello.txt 2>/dev/null | grep -q developer; then
    break
  fi
  sleep 0.5
done
echo "from a pod in the cluster, with the header:"
$kubectl -n $ns exec client -- /probe http -H "x-kwarp-user: demo" http://sample/hello.txt | sed 's/^/    /'
echo "and without it (the deployed app answers):"
$kubectl -n $ns exec client -- /probe http http://sample/hello.txt | grep '"pod"' | sed 's/^/    /'
kill -INT $session 2>/dev/null || true
wait $session 2>/dev/null || true
rm -rf "$www"

cat <<MSG

The local shell printed the pod's variable, its ConfigMap file and its hostname, though this
machine has none of them and cannot reach the pod; a local server took the pod's requests that
carried the header while the deployed app kept serving the rest. Try your own command:

    bin/testcluster laptop bin/kwarp exec -n $ns -t deploy/sample -- bash
    bin/testcluster laptop bin/kwarp exec -n $ns -t deploy/sample --steal -- python3 -m http.server 8080

'make cluster-down' removes the cluster and everything it made.
MSG
