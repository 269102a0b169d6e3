// Config files for the native programs: nginx as upstream and as proxy, haproxy, caddy.
// Each is tuned the way its docs recommend for a reverse proxy benchmark: one worker or thread (the
// proxy under test gets one core), keep-alive to the upstream, no access log.

/** Directives every nginx instance here needs: one process, files inside dir, no logging to /var. */
function nginxCommon(dir: string): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; multi_accept on; }
`
}

function nginxHttpCommon(dir: string): string {
  return `  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
`
}

/** nginx serving the bench's upstream: "ok" for any path, files for /4k and /1m (in root), status 500 "no" for /500. */
export function nginxUpstreamConfig(dir: string, port: number, root: string): string {
  return `${nginxCommon(dir)}
http {
${nginxHttpCommon(dir)}
  default_type text/plain;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location = /4k { }
    location = /1m { }
    location = /500 { return 500 "no"; }
    location / { return 200 "ok"; }
  }
}
`
}

/** nginx as a reverse proxy with a keep-alive upstream pool; bodies streamed (never to disk). */
export function nginxProxyConfig(dir: string, port: number, upstreamHostPort: string,
  tls: { readonly cert: string, readonly key: string, readonly http2: boolean } | null = null): string {
  // Scenarios tls and h2: the listener speaks TLS (and HTTP/2 by ALPN for h2) with the bench's certificate.
  const listen = tls === null ? `listen 127.0.0.1:${port};`
    : `listen 127.0.0.1:${port} ssl${tls.http2 ? ' http2' : ''};\n    ssl_certificate ${tls.cert};\n    ssl_certificate_key ${tls.key};\n    ssl_session_cache shared:SSL:1m;`
  return `${nginxCommon(dir)}
http {
${nginxHttpCommon(dir)}
  upstream bench_upstream {
    server ${upstreamHostPort};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    ${listen}
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
`
}

export function haproxyConfig(port: number, upstreamHostPort: string): string {
  return `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive

frontend bench
  bind 127.0.0.1:${port}
  default_backend upstream

backend upstream
  http-reuse always
  server u1 ${upstreamHostPort}
`
}

export function caddyConfig(port: number, upstreamHostPort: string): string {
  return `{
  admin off
  auto_https off
}

http://:${port} {
  bind 127.0.0.1
  reverse_proxy ${upstreamHostPort}
}
`
}
