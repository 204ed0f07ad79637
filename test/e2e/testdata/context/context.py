import os
print(os.environ.get("GREETING", "(unset)"))
print([l for l in open("/etc/sample/app.conf").read().splitlines() if l.startswith("marker=")][0])
print(open("/etc/hostname").read().strip())
print(open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read().strip())
print("size>0", int(os.stat("/etc/sample/app.conf").st_size > 0))
print("listed app.conf", int("app.conf" in os.listdir("/etc/sample")))
