/* SPDX-License-Identifier: MIT */
/* Location-level settings: parsed per scope into PartialSettings, resolved along
 * defaults -> server -> location by the rows' inheritance (SCHEMA_INHERIT). */
#include <arpa/inet.h>

#include "cache-control.h"
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

static void headers_free(HeaderSetting *a, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(a[i].name);
                var_template_free(a[i].value);
        }
        free(a);
}

void settings_done(LocationSettings *s) {
        headers_free(s->set_header, s->n_set_header);
        headers_free(s->add_header, s->n_add_header);
        headers_free(s->replace_header, s->n_replace_header);
        strv_free(s->hide_header, s->n_hide_header);
        free(s->ssl_trusted_certificate);
        free(s->ssl_certificate);
        free(s->ssl_certificate_key);
        var_template_free(s->ssl_name);
        free(s->access);
        strv_free(s->upgrade_protocols, s->n_upgrade_protocols);
        strv_free(s->limit, s->n_limit);
        free(s->limit_zones);
        strv_free(s->real_ip_from, s->n_real_ip_from);
        free(s->real_ip_rules);
        free(s->real_ip_header);
        var_template_free(s->cache_key);
        var_template_free(s->cache_bypass);
        var_template_free(s->cache_no_store);
        strv_free(s->cache_valid, s->n_cache_valid);
        *s = (LocationSettings) {};
}

void partial_done(PartialSettings *p) {
        settings_done(&p->v);
}

/* The header map of a T_HEADERS row (set_header, add_header, replace_header) in s. */
static HeaderSetting **header_map(const Setting *row, LocationSettings *s, size_t **ret_n) {
        *ret_n = (size_t *) ((char *) s + row->offset_n);
        return (HeaderSetting **) ((char *) s + row->offset);
}

static int header_set(HeaderSetting **map, size_t *n, const char *name, const VarTemplate *value) {
        HeaderSetting *a;
        VarTemplate *v = NULL;

        if (value) {
                v = template_dup(value);
                if (!v)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < *n; i++)
                if (strcasecmp((*map)[i].name, name) == 0) {
                        var_template_free((*map)[i].value);
                        (*map)[i].value = v;
                        return 0;
                }
        a = reallocarray(*map, *n + 1, sizeof(HeaderSetting));
        if (!a) {
                var_template_free(v);
                return -ENOMEM;
        }
        *map = a;
        a[*n].name = strdup(name);
        if (!a[*n].name) {
                var_template_free(v);
                return -ENOMEM;
        }
        a[*n].value = v;
        (*n)++;
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

        for (size_t k = 0; k < SCHEMA_INHERIT.n_rows; k++) {
                const Setting *row = &SCHEMA_INHERIT.rows[k];
                size_t *dn, *fn;
                HeaderSetting **d, **f;

                if (row->type != T_HEADERS)
                        continue;
                d = header_map(row, dst, &dn);
                f = header_map(row, (LocationSettings *) from, &fn);
                for (size_t i = 0; i < *fn; i++) {
                        r = header_set(d, dn, (*f)[i].name, (*f)[i].value);
                        if (r < 0)
                                return r;
                }
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
        case T_FLAGS:
                *(unsigned *) to = *(const unsigned *) from;
                return 0;
        case T_DURATION:
        case T_SIZE:
                *(uint64_t *) to = *(const uint64_t *) from;
                return 0;
        case T_ENUM:
                *(int *) to = *(const int *) from;
                return 0;
        case T_PATH:
        case T_STRING: {
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
        case T_GROUP: /* a group the Config owns (auth_request): shared, not copied */
                *(const void **) to = *(const void *const *) from;
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

static int parse_headers(Loader *l, const config_setting_t *s, const Setting *row, PartialSettings *p) {
        size_t *n;
        HeaderSetting **map = header_map(row, &p->v, &n);
        int r;

        if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                return ERR(l, s, "\"%s\" must be a group { Name = \"value\"; ... }", row->name);
        if (config_setting_length(s) > CONFIG_LIST_MAX)
                return ERR(l, s, "\"%s\" has too many entries", row->name);
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
                r = row->check ? row->check(l, h, t, 1) : 0;
                if (r >= 0)
                        r = header_set(map, n, config_setting_name(h), t);
                var_template_free(t);
                if (r == -EINVAL)
                        continue;
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
                return parse_headers(l, s, row, p);
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

int access_rule_find(const AccessRule *rules, size_t n, const struct sockaddr *addr) {
        uint8_t a[16] = {};
        int family;

        if (!addr)
                return -1;
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
                return -1;
        }
        for (size_t i = 0; i < n; i++)
                if (rules[i].family == AF_UNSPEC ||
                    (rules[i].family == family && prefix_match(a, rules[i].addr, rules[i].prefix)))
                        return (int) i;
        return -1;
}

bool cidr_match(const AccessRule *nets, size_t n, const struct sockaddr *addr) {
        uint8_t a[16] = {};
        int family;

        if (!addr || n == 0)
                return false;
        if (addr->sa_family == AF_UNIX) {
                for (size_t i = 0; i < n; i++)
                        if (nets[i].family == AF_UNIX)
                                return true;
                return false;
        }
        if (addr->sa_family == AF_INET) {
                family = AF_INET;
                memcpy(a, &((const struct sockaddr_in *) addr)->sin_addr, 4);
        } else if (addr->sa_family == AF_INET6) {
                const struct in6_addr *in6 = &((const struct sockaddr_in6 *) addr)->sin6_addr;
                family = IN6_IS_ADDR_V4MAPPED(in6) ? AF_INET : AF_INET6;
                memcpy(a, in6->s6_addr + (family == AF_INET ? 12 : 0), family == AF_INET ? 4 : 16);
        } else
                return false;
        for (size_t i = 0; i < n; i++)
                if (nets[i].family == family && prefix_match(a, nets[i].addr, nets[i].prefix))
                        return true;
        return false;
}

/* ---- the cache's checks ---- */

int config_check_cache_valid(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        char *const *a = value;
        int r = 0;

        for (size_t k = 0; k < n && r >= 0; k++) {
                int codes[32];
                size_t nc;
                bool any;
                uint64_t usec;
                if (cache_valid_parse(a[k], codes, ELEMENTSOF(codes), &nc, &any, &usec) < 0)
                        r = ERR(l, config_setting_type(s) == CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, (unsigned) k),
                                "invalid cache_valid entry \"%s\" (expected \"CODE [CODE...] DURATION\" or \"any DURATION\")",
                                a[k]);
        }
        return r;
}

int config_check_cache_path(Loader *l, const config_setting_t *s, const void *value, size_t n) {
        const char *v = value;

        (void) n;
        if (v[0] != '/')
                return ERR(l, s, "\"cache_path\" must be an absolute path");
        return 0;
}

bool access_check(const AccessRule *rules, size_t n, const struct sockaddr *addr) {
        int i;

        if (!rules || n == 0)
                return true;
        if (!addr)
                return false;
        i = access_rule_find(rules, n, addr);
        if (i < 0)
                return addr->sa_family == AF_INET || addr->sa_family == AF_INET6 || addr->sa_family == AF_UNIX;
        return rules[i].allow;
}
