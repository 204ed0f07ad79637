package cluster

import (
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig for one client certificate with everything embedded, so
// the file can be copied (into a netns, a test's temp dir) and still work.
func writeKubeconfig(path, server, caFile, certFile, keyFile, user string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kwarp-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["kwarp-test"] = &clientcmdapi.Context{Cluster: "kwarp-test", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "kwarp-test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

// writeKubeconfigs writes one kubeconfig per client of the API server. The laptop's points at
// the address the laptop link reaches; the certificate has that address as a SAN.
func (c Config) writeKubeconfigs() error {
	local := fmt.Sprintf("https://127.0.0.1:%d", APIPort)
	for _, k := range []struct{ file, server, cert, user string }{
		{"admin.kubeconfig", local, "admin", "admin"},
		{"laptop.kubeconfig", fmt.Sprintf("https://%s:%d", LaptopHostIP, APIPort), "admin", "admin"},
		{"controller-manager.kubeconfig", local, "controller-manager", "controller-manager"},
		{"scheduler.kubeconfig", local, "scheduler", "scheduler"},
		{"kubelet.kubeconfig", local, "kubelet", "kubelet"},
		{"kube-proxy.kubeconfig", local, "kube-proxy", "kube-proxy"},
	} {
		if err := writeKubeconfig(c.path(k.file), k.server, c.pki("ca.crt"), c.pki(k.cert+".crt"), c.pki(k.cert+".key"), k.user); err != nil {
			return err
		}
	}
	return nil
}
