/* SPDX-License-Identifier: MIT */
/* Location-level settings: parsed per scope into PartialSettings, resolved along
 * defaults -> server -> location by the rows' inheritance (SCHEMA_INHERIT). */
#include <arpa/inet.h>

#include "config-schema.h"
#include "util.h"

static VarTemplate *template_dup(const VarTemplate *t) {
        VarTemplate *n = NULL;

        if (!t)
                return NULL;
        if (var_template_compile(t->source, &n, NULL) < 0)
                return NULL;
        return n;
}

static int strv_copy(char ***dst, size_t *dst_n, char *const *a, size_t n) {
        *dst = n > 0 ? calloc(n, sizeof(char *)) : NULL;
        *dst_n = 0;
        if (n > 0 && !*dst)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                (*dst)[i] = strdup(a[i]);
                if (!(*dst)[i])
                        return -ENOMEM;
                (*dst_n)++;
        }
        return 0;
}

void settings_done(LocationSettings *s) {
        for (size_t i = 0; i < s->n_set_header; i++) {
                free(s->set_header[i].name);
                var_template_free(s->set_header[i].value);
        }
        free(s->set_header);
        strv_free(s->hide_header, s->n_hide_header);
        free(s->ssl_trusted_certificate);
        free(s->ssl_certificate);
        free(s->ssl_certificate_key);
        var_template_free(s->ssl_name);
        free(s->access);
        strv_free(s->upgrade_protocols, s->n_upgrade_protocols);
        *s = (LocationSettings) {};
}

void partial_done(PartialSettings *p) {
        settings_done(&p->v);
}

static int header_set(LocationSettings *s, const char *name, const VarTemplate *value) {
        HeaderSetting *a;
        VarTemplate *v = NULL;

        if (value) {
                v = template_dup(value);
                if (!v)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_set_header; i++)
                if (strcasecmp(s->set_header[i].name, name) == 0) {
                        var_template_free(s->set_header[i].value);
                        s->set_header[i].value = v;
                        return 0;
                }
        a = reallocarray(s->set_header, s->n_set_header + 1, sizeof(HeaderSetting));
        if (!a) {
                var_template_free(v);
                return -ENOMEM;
        }
        s->set_header = a;
        a[s->n_set_header].name = strdup(name);
        if (!a[s->n_set_header].name) {
                var_template_free(v);
                return -ENOMEM;
        }
        a[s->n_set_header].value = v;
        s->n_set_header++;
        return 0;
}

static int hide_add(LocationSettings *s, const char *name) {
        char **a;

        for (size_t i = 0; i < s->n_hide_header; i++)
                if (strcasecmp(s->hide_header[i], name) == 0)
                        return 0;
        a = reallocarray(s->hide_header, s->n_hide_header + 1, sizeof(char *));
        if (!a)
                return -ENOMEM;
        s->hide_header = a;
        a[s->n_hide_header] = strndup_lower(name, strlen(name));
        if (!a[s->n_hide_header])
                return -ENOMEM;
        s->n_hide_header++;
        return 0;
}

static int merge_by_name(LocationSettings *dst, const LocationSettings *from) {
        int r;

        for (size_t i = 0; i < from->n_set_header; i++) {
                r = header_set(dst, from->set_header[i].name, from->set_header[i].value);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < from->n_hide_header; i++) {
                r = hide_add(dst, from->hide_header[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* dst's field of row := a copy of src's. */
static int copy_field(const Setting *row, LocationSettings *dst, const LocationSettings *src) {
        const char *from = (const char *) src + row->offset;
        char *to = (char *) dst + row->offset;

        switch (row->type) {
        case T_BOOL:
                *(bool *) to = *(const bool *) from;
                return 0;
        case T_UINT:
                *(unsigned *) to = *(const unsigned *) from;
                return 0;
        case T_DURATION:
        case T_SIZE:
                *(uint64_t *) to = *(const uint64_t *) from;
                return 0;
        case T_PATH: {
                const char *v = *(char *const *) from;
                *(char **) to = v ? strdup(v) : NULL;
                return v && !*(char **) to ? -ENOMEM : 0;
        }
        case T_TEMPLATE: {
                const VarTemplate *v = *(VarTemplate *const *) from;
                *(VarTemplate **) to = v ? template_dup(v) : NULL;
                return v && !*(VarTemplate **) to ? -ENOMEM : 0;
        }
        case T_STRINGS:
                return strv_copy((char ***) to, (size_t *) ((char *) dst + row->offset_n), *(char **const *) from,
                                 *(const size_t *) ((const char *) src + row->offset_n));
        case T_ACCESS:
                if (src->n_access > 0) {
                        dst->access = calloc(src->n_access, sizeof(AccessRule));
                        if (!dst->access)
                                return -ENOMEM;
                        memcpy(dst->access, src->access, src->n_access * sizeof(AccessRule));
                        dst->n_access = src->n_access;
                }
                return 0;
        default:
                return 0;
        }
}

/* dst = parent with p applied on top: INHERIT_MERGE rows merged by name (parent's first),
 * INHERIT_REPLACE rows from p where p sets them, else from parent. */
int settings_resolve(LocationSettings *dst, const LocationSettings *parent, const PartialSettings *p) {
        uint64_t set = p ? p->set : 0;
        int r;

        *dst = (LocationSettings) {};
        r = merge_by_name(dst, parent);
        if (r >= 0 && p)
                r = merge_by_name(dst, &p->v);
        for (size_t i = 0; r >= 0 && i < SCHEMA_INHERIT.n_rows; i++) {
                const Setting *row = &SCHEMA_INHERIT.rows[i];
                if (row->inherit == INHERIT_REPLACE)
                        r = copy_field(row, dst, (set & (UINT64_C(1) << i)) ? &p->v : parent);
        }
        return r;
}

int settings_builtin(LocationSettings *s) {
        PartialSettings p = {};
        int r;

        r = schema_defaults(&SCHEMA_INHERIT, SC_DEFAULTS, NULL, &p);
        if (r >= 0)
                r = settings_resolve(s, &(LocationSettings) {}, &p);
        partial_done(&p);
        return r;
}

static int parse_headers(Loader *l, const config_setting_t *s, PartialSettings *p) {
        int r;

        if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                return ERR(l, s, "\"set_header\" must be a group { Name = \"value\"; ... }");
        if (config_setting_length(s) > CONFIG_LIST_MAX)
                return ERR(l, s, "\"set_header\" has too many entries");
        for (int k = 0; k < config_setting_length(s); k++) {
                const config_setting_t *h = config_setting_get_elem(s, (unsigned) k);
                VarTemplate *t = NULL;
                const char *v = NULL;

                if (get_string(l, h, &v) < 0)
                        continue;
                if (*v) {
                        r = get_template(l, h, &t);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                continue;
                }
                r = header_set(&p->v, config_setting_name(h), t);
                var_template_free(t);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_access(Loader *l, const config_setting_t *s, PartialSettings *p) {
        char **a = NULL;
        size_t n = 0;
        int r;

        r = get_string_list(l, s, &a, &n, false);
        if (r < 0)
                return r;
        free(p->v.access);
        p->v.access = n > 0 ? calloc(n, sizeof(AccessRule)) : NULL;
        p->v.n_access = 0;
        if (n > 0 && !p->v.access) {
                strv_free(a, n);
                return -ENOMEM;
        }
        for (size_t k = 0; k < n; k++) {
                if (parse_access_rule(a[k], &p->v.access[p->v.n_access]) < 0) {
                        r = ERR(l, config_setting_type(s) == CONFIG_TYPE_STRING ? s
                                                                               : config_setting_get_elem(s, (unsigned) k),
                                "invalid access rule \"%s\" (expected \"allow|deny ADDRESS[/BITS]|all\")", a[k]);
                        if (r == -ENOMEM)
                                break;
                        continue;
                }
                p->v.n_access++;
        }
        strv_free(a, n);
        /* the list is set even with bad rules (they are diagnosed) */
        return r == -ENOMEM ? r : 0;
}

int settings_parse_special(Loader *l, const config_setting_t *s, const Setting *row, PartialSettings *p) {
        char **a = NULL;
        size_t n = 0;
        int r;

        switch (row->type) {
        case T_HEADERS:
                return parse_headers(l, s, p);
        case T_ACCESS:
                return parse_access(l, s, p);
        case T_HEADER_NAMES:
                r = get_string_list(l, s, &a, &n, true);
                if (r < 0)
                        return r;
                for (size_t k = 0; k < n && r >= 0; k++)
                        r = hide_add(&p->v, a[k]);
                strv_free(a, n);
                return r;
        default:
                return 0;
        }
}

int parse_access_rule(const char *s, AccessRule *ret) {
        AccessRule a = {};
        const char *p;
        char buf[INET6_ADDRSTRLEN + 8], *slash;
        unsigned max;

        if (strncmp(s, "allow", 5) == 0)
                a.allow = true, p = s + 5;
        else if (strncmp(s, "deny", 4) == 0)
                a.allow = false, p = s + 4;
        else
                return -EINVAL;
        if (*p != ' ' && *p != '\t')
                return -EINVAL;
        while (*p == ' ' || *p == '\t')
                p++;
        if (streq(p, "all")) {
                a.family = AF_UNSPEC;
                *ret = a;
                return 0;
        }
        if (strlen(p) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, p);
        slash = strchr(buf, '/');
        if (slash)
                *slash = 0;
        if (inet_pton(AF_INET, buf, a.addr) == 1)
                a.family = AF_INET, max = 32;
        else if (inet_pton(AF_INET6, buf, a.addr) == 1)
                a.family = AF_INET6, max = 128;
        else
                return -EINVAL;
        a.prefix = max;
        if (slash) {
                uint64_t v;
                if (parse_uint64(slash + 1, strlen(slash + 1), &v) < 0 || v > max)
                        return -EINVAL;
                a.prefix = (unsigned) v;
        }
        for (unsigned bit = a.prefix; bit < max; bit++)
                a.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
        *ret = a;
        return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits) {
        unsigned full = bits / 8, rest = bits % 8;

        if (memcmp(a, b, full) != 0)
                return false;
        if (rest == 0)
                return true;
        uint8_t mask = (uint8_t) (0xffu << (8 - rest));
        return (a[full] & mask) == (b[full] & mask);
}

bool access_check(const AccessRule *rules, size_t n, const struct sockaddr *addr) {
        uint8_t a[16] = {};
        int family;

        if (!rules || n == 0)
                return true;
        if (!addr)
                return false;
        switch (addr->sa_family) {
        case AF_INET:
                family = AF_INET;
                memcpy(a, &((const struct sockaddr_in *) addr)->sin_addr, 4);
                break;
        case AF_INET6: {
                const struct in6_addr *in6 = &((const struct sockaddr_in6 *) addr)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(in6)) {
                        family = AF_INET;
                        memcpy(a, in6->s6_addr + 12, 4);
                } else {
                        family = AF_INET6;
                        memcpy(a, in6->s6_addr, 16);
                }
                break;
        }
        case AF_UNIX:
                family = AF_INET;
                a[0] = 127, a[3] = 1;
                break;
        default:
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                if (rules[i].family == AF_UNSPEC)
                        return rules[i].allow;
                if (rules[i].family == family && prefix_match(a, rules[i].addr, rules[i].prefix))
                        return rules[i].allow;
        }
        return true;
}

