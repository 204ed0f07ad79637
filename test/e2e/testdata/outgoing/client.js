// A Node client for kwarp's outgoing tests.
//   client.js tcp HOST PORT     net.connect, print the first line
//   client.js http URL          http.get, print the body
//   client.js lookup NAME       dns.lookup (getaddrinfo in libuv's pool)
//   client.js resolve NAME      dns.resolve4 (c-ares, its own UDP queries)
const [mode, a, b] = process.argv.slice(2);
const fail = (e) => { console.error(String(e)); process.exit(1); };
if (mode === 'tcp') {
  const net = require('net');
  const s = net.connect({ host: a, port: Number(b) });
  let buf = '';
  s.on('data', (d) => {
    buf += d;
    const i = buf.indexOf('\n');
    if (i >= 0) { console.log(buf.slice(0, i)); s.destroy(); }
  });
  s.on('error', fail);
} else if (mode === 'http') {
  require('http').get(a, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => console.log(body));
  }).on('error', fail);
} else if (mode === 'lookup') {
  require('dns').lookup(a, { family: 4 }, (err, addr) => (err ? fail(err) : console.log(addr)));
} else if (mode === 'resolve') {
  require('dns').resolve4(a, (err, addrs) => (err ? fail(err) : console.log(addrs[0])));
} else {
  fail('unknown mode ' + mode);
}
