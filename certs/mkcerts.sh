#!/usr/bin/env bash
# mkcerts.sh: throwaway test and development certificates for tlsfront, signed by a local
# test CA. Everything it writes goes into the directory you name; no private key made here
# is ever meant to be committed: point it at a temp dir or an ignored folder.
#
#   mkcerts.sh ca DIR
#   mkcerts.sh leaf DIR BASENAME NAME[,NAME...] [--rsa [BITS]] [--layout pair|pem|certbot]
#                                               (a NAME may be an IPv4/IPv6 address)
#                                               [--days N] [--ca CADIR]
#   mkcerts.sh demo DIR
#   mkcerts.sh many DIR N
#
# Idempotent: the CA is kept when it exists; leaves are rewritten (via a temp file and mv).
set -euo pipefail

PROG=$(basename "$0")
CA_DAYS=30
CA_SUBJ="/O=tlsfront test/CN=tlsfront test CA"

usage() {
    cat >&2 <<EOF
usage: $PROG ca DIR
       $PROG leaf DIR BASENAME NAME[,NAME...] [--rsa [BITS]] [--layout pair|pem|certbot]
                  [--days N] [--ca CADIR]
       $PROG demo DIR
       $PROG many DIR N
  ca    make DIR/ca.crt and DIR/ca.key (ECDSA P-256, $CA_DAYS days) unless they exist
  leaf  make a server certificate signed by CADIR/ca.* (default DIR; created if missing)
          pair:    DIR/BASENAME.crt + DIR/BASENAME.key (default)
          pem:     DIR/BASENAME.pem (certificate, then key)
          certbot: DIR/BASENAME/{fullchain,privkey,cert,chain}.pem
        ECDSA P-256 unless --rsa (default 2048 bits); --days defaults to 30; a NAME that is an
        IPv4 or IPv6 address goes into the SAN as an IP address
  demo  the standard set used by the tests and the demo
  many  N leaves named <i>.many.test (i = 1..N) as DIR/<i>.many.test.pem, sharing one key
EOF
    exit 2
}

die() {
    echo "$PROG: $*" >&2
    exit 2
}

# Temp dirs made by this run, removed on any exit (including die).
TMPS=()
cleanup() {
    local t
    for t in "${TMPS[@]}"; do rm -rf "$t"; done
}
trap cleanup EXIT

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

# make_ca DIR: create the CA unless both halves already exist.
make_ca() {
    local dir=$1
    mkdir -p "$dir"
    if [ -s "$dir/ca.crt" ] && [ -s "$dir/ca.key" ]; then
        echo "using CA $dir/ca.crt"
        return 0
    fi
    local tmp
    tmp=$(mktemp -d "$dir/.ca.XXXXXX")
    TMPS+=("$tmp")
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$tmp/ca.key" -out "$tmp/ca.crt" -days "$CA_DAYS" -subj "$CA_SUBJ" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    ) || die "openssl failed to make the CA in $dir"
    chmod 600 "$tmp/ca.key"
    chmod 644 "$tmp/ca.crt"
    mv -f "$tmp/ca.key" "$dir/ca.key"
    mv -f "$tmp/ca.crt" "$dir/ca.crt"
    echo "made CA $dir/ca.crt"
}

# make_leaf DIR BASENAME NAMES KEYTYPE BITS LAYOUT DAYS CADIR
make_leaf() {
    local dir=$1 base=$2 names=$3 ktype=$4 bits=$5 layout=$6 days=$7 cadir=$8
    local san="" cn="" n
    IFS=',' read -r -a list <<<"$names"
    [ ${#list[@]} -gt 0 ] || die "no names given"
    for n in "${list[@]}"; do
        if [[ $n =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || $n =~ ^[0-9A-Fa-f]*:[0-9A-Fa-f:.]*$ ]]; then
            san+="${san:+,}IP:$n" # an address literal (pebble's own API, on 127.0.0.1)
            continue
        fi
        [[ $n =~ ^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$ ]] || die "bad name '$n'"
        san+="${san:+,}DNS:$n"
        [ -n "$cn" ] || cn=$n
    done
    if [ ! -s "$cadir/ca.crt" ] || [ ! -s "$cadir/ca.key" ]; then make_ca "$cadir"; fi
    local subj="/O=tlsfront test"
    if [ ${#cn} -le 64 ]; then subj+="/CN=$cn"; fi
    local tmp
    tmp=$(mktemp -d "$dir/.leaf.XXXXXX")
    TMPS+=("$tmp")
    local ku="digitalSignature"
    if [ "$ktype" = rsa ]; then
        ku+=",keyEncipherment"
        (umask 077; openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$bits" \
            -out "$tmp/key.pem" 2>/dev/null) || die "openssl genpkey (RSA $bits) failed"
    else
        (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
            -out "$tmp/key.pem" 2>/dev/null) || die "openssl genpkey (EC) failed"
    fi
    cat >"$tmp/ext.cnf" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,$ku
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    openssl req -new -key "$tmp/key.pem" -subj "$subj" -out "$tmp/csr.pem" 2>/dev/null ||
        die "openssl req failed for $base"
    openssl x509 -req -in "$tmp/csr.pem" -CA "$cadir/ca.crt" -CAkey "$cadir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
        -extfile "$tmp/ext.cnf" -out "$tmp/crt.pem" 2>/dev/null ||
        die "openssl x509 failed to sign $base"
    chmod 600 "$tmp/key.pem"
    chmod 644 "$tmp/crt.pem"
    case $layout in
    pair)
        mv -f "$tmp/key.pem" "$dir/$base.key"
        mv -f "$tmp/crt.pem" "$dir/$base.crt"
        echo "made $dir/$base.crt + $base.key ($ktype) for $names"
        ;;
    pem)
        (umask 077; cat "$tmp/crt.pem" "$tmp/key.pem" >"$tmp/all.pem")
        mv -f "$tmp/all.pem" "$dir/$base.pem"
        echo "made $dir/$base.pem ($ktype) for $names"
        ;;
    certbot)
        # certbot's live/NAME/ holds cert.pem, chain.pem, fullchain.pem (cert then chain)
        # and privkey.pem; here the "chain" is our test CA.
        mkdir -p "$dir/$base"
        cp "$cadir/ca.crt" "$tmp/chain.pem"
        cat "$tmp/crt.pem" "$tmp/chain.pem" >"$tmp/fullchain.pem"
        echo "tlsfront test certificate made by mkcerts.sh" >"$tmp/README"
        mv -f "$tmp/crt.pem" "$tmp/cert.pem"
        mv -f "$tmp/key.pem" "$tmp/privkey.pem"
        local f
        for f in privkey.pem cert.pem chain.pem fullchain.pem README; do
            mv -f "$tmp/$f" "$dir/$base/$f"
        done
        echo "made $dir/$base/{fullchain,privkey}.pem ($ktype) for $names"
        ;;
    esac
}

cmd_leaf() {
    [ $# -ge 3 ] || usage
    local dir=$1 base=$2 names=$3
    shift 3
    local ktype=ec bits=2048 layout=pair days=30 cadir=""
    while [ $# -gt 0 ]; do
        case $1 in
        --rsa)
            ktype=rsa
            if [ $# -ge 2 ] && is_uint "$2"; then bits=$2; shift; fi
            ;;
        --layout)
            [ $# -ge 2 ] || usage
            case $2 in pair | pem | certbot) layout=$2 ;; *) die "bad --layout '$2'" ;; esac
            shift
            ;;
        --days)
            [ $# -ge 2 ] && is_uint "$2" || die "--days needs a positive number"
            days=$2
            shift
            ;;
        --ca)
            [ $# -ge 2 ] || usage
            cadir=$2
            shift
            ;;
        *) die "unknown option '$1'" ;;
        esac
        shift
    done
    [[ $base =~ ^[A-Za-z0-9_.*-]+$ && $base != .* ]] || die "bad BASENAME '$base'"
    [ "$bits" -ge 1024 ] || die "RSA bits must be at least 1024"
    mkdir -p "$dir"
    make_leaf "$dir" "$base" "$names" "$ktype" "$bits" "$layout" "$days" "${cadir:-$dir}"
}

cmd_demo() {
    [ $# -eq 1 ] || usage
    local d=$1
    make_ca "$d"
    make_leaf "$d" example example.test,www.example.test ec 0 pair 30 "$d"
    make_leaf "$d" wild '*.wild.test' ec 0 pem 30 "$d"
    make_leaf "$d" rsa rsa.test rsa 2048 pair 30 "$d"
    make_leaf "$d" dual-ec dual.test ec 0 pair 30 "$d"
    make_leaf "$d" dual-rsa dual.test rsa 2048 pem 30 "$d"
    make_leaf "$d" multi a.multi.test,b.multi.test,c.multi.test ec 0 certbot 30 "$d"
    echo "demo set in $d: trust anchor $d/ca.crt"
}

cmd_many() {
    [ $# -eq 2 ] || usage
    local d=$1 n=$2
    is_uint "$n" || die "N must be a positive number"
    make_ca "$d"
    [ -x /usr/bin/python3 ] || die "/usr/bin/python3 is needed (apt-get install python3)"
    /usr/bin/python3 - "$d" "$n" <<'EOF'
# Speed over realism: all leaves made by one worker process share one ECDSA P-256 key; each
# leaf has its own serial and SAN and is signed by the CA. Signing dominates the cost, so the
# range is split across worker processes.
import datetime, os, sys
from concurrent.futures import ProcessPoolExecutor
try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:
    sys.exit("mkcerts.sh: python3-cryptography is needed (apt-get install python3-cryptography)")

outdir, total = sys.argv[1], int(sys.argv[2])

def work(lo_hi):
    lo, hi = lo_hi
    with open(os.path.join(outdir, "ca.key"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(outdir, "ca.crt"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub = key.public_key()
    now = datetime.datetime.utcnow() - datetime.timedelta(minutes=5)
    end = now + datetime.timedelta(days=30)
    ski = x509.SubjectKeyIdentifier.from_public_key(pub)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    bc = x509.BasicConstraints(ca=False, path_length=None)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    for i in range(lo, hi):
        name = "%d.many.test" % i
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(ca.subject).public_key(pub)
             .serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(end)
             .add_extension(bc, critical=True).add_extension(eku, critical=False)
             .add_extension(ski, critical=False).add_extension(aki, critical=False)
             .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False))
        crt = b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        path = os.path.join(outdir, name + ".pem")
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(crt + key_pem)
        os.replace(tmp, path)
    return hi - lo

jobs = max(1, min(os.cpu_count() or 1, 8, (total + 499) // 500))
step = (total + jobs - 1) // jobs
ranges = [(lo, min(lo + step, total + 1)) for lo in range(1, total + 1, step)]
if jobs == 1:
    done = sum(map(work, ranges))
else:
    with ProcessPoolExecutor(jobs) as ex:
        done = sum(ex.map(work, ranges))
print("made %d certificates <i>.many.test (i = 1..%d) in %s" % (done, total, outdir))
EOF
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
ca)
    [ $# -eq 1 ] || usage
    make_ca "$1"
    ;;
leaf) cmd_leaf "$@" ;;
demo) cmd_demo "$@" ;;
many) cmd_many "$@" ;;
-h | --help | help) usage ;;
*)
    echo "$PROG: unknown command '$cmd'" >&2
    usage
    ;;
esac
