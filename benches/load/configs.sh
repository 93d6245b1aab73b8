# Sourced by run.sh: the nginx and chaingate configurations of the load bench, written to $dir.
# shellcheck shell=bash

nginx_conf() { # name, server blocks
    cat >"$dir/$1.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/$1.pid;
error_log $dir/$1.err warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $dir/$1.body;
    proxy_temp_path $dir/$1.proxy;
    fastcgi_temp_path $dir/$1.fcgi;
    uwsgi_temp_path $dir/$1.uwsgi;
    scgi_temp_path $dir/$1.scgi;
$2
}
EOF
}

nginx_conf upstream "
    server { listen 127.0.0.1:$UP_H1; location / { default_type text/plain; return 200 \"hello from upstream\n\"; } }
    server { listen 127.0.0.1:$UP_H2 http2; location / { default_type text/plain; return 200 \"hello from upstream\n\"; } }"

proxy_location="location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Authorization \"Bearer at2-fixed-for-the-nginx-baseline\";
        }"
nginx_conf proxy "
    upstream up { server 127.0.0.1:$UP_H1; keepalive 256; }
    server { listen 127.0.0.1:$NGX_H1; $proxy_location }
    server { listen 127.0.0.1:$NGX_H2 http2; $proxy_location }"

# haproxy doing the same job: one thread, keep-alive to the upstream, a fixed Authorization.
cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    http-reuse always
    option http-keep-alive
frontend proxy
    bind 127.0.0.1:$HAP_H1
    bind 127.0.0.1:$HAP_H2 proto h2
    http-request set-header Authorization "Bearer at2-fixed-for-the-haproxy-baseline"
    default_backend up
backend up
    server up 127.0.0.1:$UP_H1
EOF

chaingate_conf() { # name, port, admin port, access_log
    cat >"$dir/$1.toml" <<EOF
listen = "127.0.0.1:$2"
admin_listen = "127.0.0.1:$3"

[domains.fast]
token_endpoint = "http://127.0.0.1:$STS_FAST/token"
client_id = "bench"
client_secret = "bench-secret"
allow_insecure_http = true

[domains.slow]
token_endpoint = "http://127.0.0.1:$STS_SLOW/token"
client_id = "bench"
client_secret = "bench-secret"
allow_insecure_http = true

[[routes]]
name = "burst"
path_prefix = "/burst"
upstream = "http://127.0.0.1:$UP_H1"
domain = "slow"

[[routes]]
name = "default"
path_prefix = "/"
upstream = "http://127.0.0.1:$UP_H1"
domain = "fast"

[cache]
max_entries = 1000000

EOF
    # "default" leaves the log section out: the access log is whatever a user gets untouched.
    [[ $4 == default ]] || printf '\n[log]\naccess_log = %s\n' "$4" >>"$dir/$1.toml"
}
chaingate_conf cg $CG $CG_ADMIN default
chaingate_conf cglog $CGLOG $CGLOG_ADMIN false
chaingate_conf cgmem $CGMEM $CGMEM_ADMIN false
chaingate_conf cgbase $CGBASE $CGBASE_ADMIN default
chaingate_conf cgct $CGCT $CGCT_ADMIN false
chaingate_conf cg2w $CG2W $CG2W_ADMIN false
# chaingate-traced: the default config with [tracing] on, every request sampled (the default
# ratio), spans exported to the upstream nginx (it answers every POST /v1/traces with 200).
CGTRACE=${CGTRACE:-19912} CGTRACE_ADMIN=${CGTRACE_ADMIN:-19913}
chaingate_conf cgtrace $CGTRACE $CGTRACE_ADMIN default
printf '\n[tracing]\notlp_endpoint = "http://127.0.0.1:%s"\n' "$UP_H1" >>"$dir/cgtrace.toml"
# chaingate-dpop: the default config with the domain's tokens DPoP-bound (RFC 9449): one proof
# signed per upstream request.
CGDPOP=${CGDPOP:-19914} CGDPOP_ADMIN=${CGDPOP_ADMIN:-19915}
chaingate_conf cgdpop $CGDPOP $CGDPOP_ADMIN default
sed -i 's|^domain = "fast"$|domain = "fast"|; /^\[domains.fast\]$/a dpop = true' "$dir/cgdpop.toml"
