const fs = require('fs');
console.log(process.env.GREETING || '(unset)');
console.log(fs.readFileSync('/etc/sample/app.conf', 'utf8').split('\n').find(l => l.startsWith('marker=')));
console.log(fs.readFileSync('/etc/hostname', 'utf8').trim());
console.log(fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim());
console.log('size>0', fs.statSync('/etc/sample/app.conf').size > 0 ? 1 : 0);
console.log('listed app.conf', fs.readdirSync('/etc/sample').includes('app.conf') ? 1 : 0);
