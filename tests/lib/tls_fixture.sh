#!/bin/sh
# tests/lib/tls_fixture.sh DIR: make the loopback TLS fixture in DIR with the
# openssl CLI (EC P-256 keys: the whole set takes a fraction of a second).
#
#   ca.crt ca.key               the test CA: the one cachefence is told to trust
#   server.crt server.key       for 127.0.0.1 and localhost (SAN IP + DNS)
#   wrongname.crt wrongname.key for other.example only
#   expired.crt expired.key     for 127.0.0.1 and localhost, expired in 2020
#   client.crt client.key       a client certificate (clientAuth)
#   other-ca.crt other-ca.key   a second CA that nobody is told to trust
#   unknown.crt unknown.key     for 127.0.0.1 and localhost, signed by other-ca
#
# Every certificate but the expired one is valid from 2 days ago to 30 days
# ahead, so that a caller whose clock is set hours off (faketime) still
# accepts it. `openssl ca` signs them all because it takes -startdate and
# -enddate on OpenSSL 3.0, where `x509 -req` cannot backdate or pre-expire.
# Nothing here reads the system's openssl.cnf.
set -eu

dir=${1:?usage: tls_fixture.sh DIR}
mkdir -p "$dir/db"
cd "$dir"

start=$(date -u -d '-2 days' +%Y%m%d%H%M%SZ)
end=$(date -u -d '+30 days' +%Y%m%d%H%M%SZ)

cat >ca.cnf <<'EOF'
[ ca ]
default_ca = fixture
[ fixture ]
database = db/index.txt
new_certs_dir = db
serial = db/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
[ req ]
distinguished_name = dn
[ dn ]
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
[ wrongname_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.example
[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
extendedKeyUsage = clientAuth
EOF
: >db/index.txt
echo 1000 >db/serial

# key_and_csr NAME CN: NAME.key and NAME.csr
key_and_csr() {
	openssl req -config ca.cnf -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
}

# sign NAME ISSUER EXTENSIONS [START END]: NAME.crt from NAME.csr, signed
# by ISSUER's key (self-signed when ISSUER is NAME), valid from START to END
sign() {
	name=$1 issuer=$2 ext=$3
	if [ "$name" = "$issuer" ]; then
		by=-selfsign
	else
		by="-cert $issuer.crt"
	fi
	# $by is one or two words on purpose
	# shellcheck disable=SC2086
	openssl ca -batch -notext -config ca.cnf -keyfile "$issuer.key" $by \
		-in "$name.csr" -out "$name.crt" -extensions "$ext" \
		-startdate "${4:-$start}" -enddate "${5:-$end}" 2>/dev/null
	rm -f "$name.csr"
}

key_and_csr ca "cachefence test CA"
sign ca ca ca_ext
key_and_csr other-ca "cachefence unknown CA"
sign other-ca other-ca ca_ext

key_and_csr server 127.0.0.1
sign server ca server_ext
key_and_csr wrongname other.example
sign wrongname ca wrongname_ext
key_and_csr expired 127.0.0.1
sign expired ca server_ext 20200101000000Z 20200102000000Z
key_and_csr client "cachefence test client"
sign client ca client_ext
key_and_csr unknown 127.0.0.1
sign unknown other-ca server_ext

rm -rf db ca.cnf
chmod 600 ./*.key
