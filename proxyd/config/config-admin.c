/* SPDX-License-Identifier: MIT */
/* The admin endpoint's server: the one with admin = true, or the built-in one. */
#include "config-schema.h"
#include "util.h"

/* At most one server has admin = true, and it shares no socket with the others, so that a
 * public listener never reaches the admin handler. Without one, a built-in admin server
 * (default settings, no access rules: Config.admin_builtin) serves the socket named "admin"
 * if systemd hands it over (proxyd-admin.socket: a unix socket whose mode and group are the
 * access control). */
int config_admin_setup(Loader *l, const LocationSettings *defaults) {
        Config *c = l->c;
        Server *admin = NULL;

        for (size_t i = 0; i < c->n_servers; i++) {
                Server *s = c->servers[i];
                if (!s->admin)
                        continue;
                if (admin)
                        TRY(config_diag_add(
                                l->diags, s->file, s->line, false,
                                "server \"%s\" has admin = true, but server \"%s\" (%s:%d) already has",
                                s->name ?: "?", admin->name ?: "?", admin->file ?: "?", admin->line));
                else
                        admin = s;
        }
        for (size_t i = 0; i < c->n_listens; i++) {
                const Listen *li = &c->listens[i];
                for (size_t k = 1; k < li->n_servers; k++)
                        if (li->servers[k]->admin != li->servers[0]->admin) {
                                const Server *a = li->servers[k]->admin ? li->servers[k] : li->servers[0];
                                const Server *o = li->servers[k]->admin ? li->servers[0] : li->servers[k];
                                TRY(config_diag_add(
                                        l->diags, a->file, a->line, false,
                                        "the admin server \"%s\" shares listen \"%s\" with server \"%s\": "
                                        "the admin endpoint needs a socket of its own",
                                        a->name ?: "?", li->text, o->name ?: "?"));
                                break;
                        }
        }
        if (admin)
                return 0;

        for (size_t i = 0; i < c->n_listens; i++)
                if (c->listens[i].kind == LISTEN_NAME && streq(c->listens[i].text, "admin"))
                        return config_diag_add(
                                l->diags, c->listens[i].file, c->listens[i].line, false,
                                "listen \"admin\" is the admin endpoint's socket: only a server "
                                "with admin = true may use it");
        Server *srv = calloc(1, sizeof(Server));
        if (!srv)
                return -ENOMEM;
        c->admin_builtin = srv;
        srv->admin = true;
        srv->limits = HTTP_LIMITS_DEFAULT;
        srv->name = strdup("admin");
        if (!srv->name)
                return -ENOMEM;
        PartialSettings p = {};
        return settings_resolve(&srv->s, defaults, &p);
}
