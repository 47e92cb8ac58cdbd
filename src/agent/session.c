/* The session store interface: id checks, then a call through the vtable. */
#include <string.h>

#include "sift/session.h"

int sift_session_id_check(const char *id, sift_err *err)
{
    if (!id || !*id)
        return sift_err_set(err, SIFT_EINVAL, "session id: must not be empty");
    size_t n = strnlen(id, SIFT_SESSION_ID_MAX + 1);
    if (n > SIFT_SESSION_ID_MAX)
        return sift_err_set(err, SIFT_EINVAL, "session id: longer than %d bytes",
                            SIFT_SESSION_ID_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '.' || c == ':' || c == '-')
            continue;
        return sift_err_set(err, SIFT_EINVAL,
                            "session id: byte %zu (0x%02x) is not allowed; use letters, digits "
                            "and _ . : -",
                            i, c);
    }
    return 0;
}

int sift_session_load(sift_session_store *s, const char *id, sift_conv *out, bool *found,
                      sift_err *err)
{
    bool dummy;
    if (!found)
        found = &dummy;
    *found = false;
    if (!s || !out || !out->arena)
        return sift_err_set(err, SIFT_EINVAL, "session load: no store or no conversation");
    int rc = sift_session_id_check(id, err);
    if (rc)
        return rc;
    rc = s->ops->load(s, id, out, found, err);
    if (rc == SIFT_EPROTO && err) {
        /* Name the session, so whoever reads the log can find the bad row. */
        char why[SIFT_ERR_MSG_MAX];
        memcpy(why, err->msg, sizeof(why));
        sift_err_set(err, rc, "session %s: %s", id, why);
    }
    return rc;
}

int sift_session_save(sift_session_store *s, const char *id, const sift_message *msgs, size_t n,
                      sift_err *err)
{
    if (!s || (!msgs && n))
        return sift_err_set(err, SIFT_EINVAL, "session save: no store or no messages");
    int rc = sift_session_id_check(id, err);
    return rc ? rc : s->ops->save(s, id, msgs, n, err);
}

int sift_session_save_if(sift_session_store *s, const char *id, const char *expect,
                         const sift_message *msgs, size_t n, bool *saved, sift_err *err)
{
    *saved = false;
    if (!s || (!msgs && n))
        return sift_err_set(err, SIFT_EINVAL, "session save: no store or no messages");
    if (!s->ops->save_if)
        return sift_err_set(err, SIFT_EINVAL,
                            "session save: the %s store cannot save conditionally", s->ops->kind);
    int rc = sift_session_id_check(id, err);
    return rc ? rc : s->ops->save_if(s, id, expect, msgs, n, saved, err);
}

int sift_session_delete(sift_session_store *s, const char *id, sift_err *err)
{
    if (!s)
        return sift_err_set(err, SIFT_EINVAL, "session delete: no store");
    int rc = sift_session_id_check(id, err);
    return rc ? rc : s->ops->remove(s, id, err);
}

void sift_session_close(sift_session_store *s)
{
    if (s)
        s->ops->close(s);
}
