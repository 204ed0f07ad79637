"""A Python client for kwarp's outgoing tests.

  client.py tcp HOST PORT     connect, print the first line
  client.py udp HOST PORT     unconnected sendto "ping"; print the reply and whether it came
                              from the address sent to
  client.py http URL          urllib GET, print the body
  client.py requests URL      requests GET (when the module is installed), print the body
"""
import socket
import sys

mode = sys.argv[1]
if mode == "tcp":
    with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=20) as s:
        print(s.makefile().readline().strip())
elif mode == "udp":
    addr = socket.getaddrinfo(sys.argv[2], int(sys.argv[3]), socket.AF_INET, socket.SOCK_DGRAM)[0][4]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(20)
    s.sendto(b"ping", addr)
    data, frm = s.recvfrom(512)
    print(data.decode(), "from-sent-address=" + ("yes" if frm == addr else "no"))
elif mode == "http":
    import urllib.request
    print(urllib.request.urlopen(sys.argv[2], timeout=20).read().decode())
elif mode == "requests":
    import requests
    print(requests.get(sys.argv[2], timeout=20).text)
else:
    sys.exit("unknown mode " + mode)
