# Applied by debian/rules to the installed /etc/proxyd/proxyd.conf: "/" is
# answered by proxyd itself instead of proxied to the demo backend.
/^      # Everything else goes to the demo backend, URI unchanged$/,/^      { prefix = "\/"; proxy_pass = "http:\/\/demo"; }$/c\
      # Everything else: answered by proxyd itself, so that a fresh installation\
      # serves without a backend. To proxy to the demo backend of tools/demo.sh\
      # (127.0.0.1:8081) with the URI unchanged, use instead\
      #   { prefix = "/"; proxy_pass = "http://demo"; }\
      # (or a drop-in, see /usr/share/doc/proxyd/examples/50-backend.conf).\
      { prefix = "/"; return = 200;\
        body = "proxyd is running.\\nThis answer comes from /etc/proxyd/proxyd.conf: give it a proxy_pass location (or add a drop-in to /etc/proxyd/proxyd.conf.d/) to reach a backend, then systemctl reload proxyd.\\n"; }
