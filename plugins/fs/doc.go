// Package fs is the built-in files plugin: it publishes the path rule table (the user's local,
// read_only, read_write and not_found globs, then the mode's defaults) that the core evaluates
// for every path, and decides remote opens and metadata with the agent's fs capability. The
// file's bytes are moved by the core, not here.
//
// Defaults (documented for users): the system and runtimes (/usr, /lib*, /bin, /sbin, /opt,
// /proc, /sys, /dev, /tmp, /run, /var/lib, /var/cache, the dynamic loader's and TLS files,
// /etc/passwd and /etc/group), the working directory and the home directory are local; the
// kubelet's files (/etc/hostname, /etc/hosts, /etc/resolv.conf, /var/run/secrets/**) are
// remote; credentials under the home (.aws, .azure, .config/gcloud, .kube,
// .docker/config.json) are not found unless the mode is local. Everything else is remote in
// modes read and write, local in localwithoverrides.
package fs
