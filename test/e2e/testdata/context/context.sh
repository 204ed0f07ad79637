#!/bin/bash
# bash → subshell → cat: the context survives children and pipes
echo "${GREETING:-(unset)}"
( grep '^marker=' /etc/sample/app.conf )
cat /etc/hostname | tr -d '\n'; echo
cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo
[ -s /etc/sample/app.conf ] && echo "size>0 1" || echo "size>0 0"
ls /etc/sample | grep -qx app.conf && echo "listed app.conf 1" || echo "listed app.conf 0"
