/*
 * airlock_pam.c: see include/airlock_pam.h.
 */
#include "airlock_pam.h"

#include <crypt.h>
#include <errno.h>
#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>

/* MARK: - PAM */

/** What the conversation answers with; lives on the caller's stack for one check. */
struct airlock_pam_credentials {
    const char *user;
    const char *password;
};

static void airlock_free_responses(struct pam_response *responses, int count) {
    if (responses == NULL) return;
    for (int i = 0; i < count; i++) {
        if (responses[i].resp != NULL) {
            explicit_bzero(responses[i].resp, strlen(responses[i].resp));
            free(responses[i].resp);
        }
    }
    free(responses);
}

/*
 * The conversation: PAM asks, we answer from the credentials given. PAM frees each answer
 * (and the array), so every answer is a strdup'ed copy. Informational and error messages
 * get an empty answer: there is nobody to show them to (PAM_SILENT asks modules not to
 * send them anyway).
 */
static int airlock_pam_conversation(int count, const struct pam_message **messages,
                                    struct pam_response **responses_out, void *appdata) {
    const struct airlock_pam_credentials *credentials = appdata;
    *responses_out = NULL;
    if (count <= 0 || count > PAM_MAX_NUM_MSG || credentials == NULL) return PAM_CONV_ERR;
    struct pam_response *responses = calloc((size_t)count, sizeof *responses);
    if (responses == NULL) return PAM_BUF_ERR;
    for (int i = 0; i < count; i++) {
        const char *answer;
        switch (messages[i]->msg_style) {
        case PAM_PROMPT_ECHO_OFF: answer = credentials->password; break;
        case PAM_PROMPT_ECHO_ON: answer = credentials->user; break;
        case PAM_ERROR_MSG:
        case PAM_TEXT_INFO: answer = NULL; break;
        default:
            airlock_free_responses(responses, count);
            return PAM_CONV_ERR;
        }
        if (answer != NULL) {
            responses[i].resp = strdup(answer);
            if (responses[i].resp == NULL) {
                airlock_free_responses(responses, count);
                return PAM_BUF_ERR;
            }
        }
        responses[i].resp_retcode = 0;
    }
    *responses_out = responses;
    return PAM_SUCCESS;
}

static void airlock_copy_string(char *destination, size_t capacity, const char *source) {
    if (capacity == 0) return;
    if (source == NULL) source = "";
    size_t length = strnlen(source, capacity - 1);
    memcpy(destination, source, length);
    destination[length] = '\0';
}

static int airlock_pam_finish(pam_handle_t *handle, int code, int stage, airlock_pam_result *result) {
    result->code = code;
    result->stage = stage;
    airlock_copy_string(result->message, sizeof result->message, pam_strerror(handle, code));
    if (handle != NULL) pam_end(handle, code | PAM_DATA_SILENT);
    return code;
}

int airlock_pam_authenticate(const char *service, const char *confdir, const char *user,
                             const char *password, const char *rhost, airlock_pam_result *result) {
    memset(result, 0, sizeof *result);
    struct airlock_pam_credentials credentials = { .user = user, .password = password };
    struct pam_conv conversation = { .conv = airlock_pam_conversation, .appdata_ptr = &credentials };
    pam_handle_t *handle = NULL;
    int code = confdir != NULL
        ? pam_start_confdir(service, user, &conversation, confdir, &handle)
        : pam_start(service, user, &conversation, &handle);
    if (code != PAM_SUCCESS) {
        /* pam_start may leave handle NULL; pam_strerror copes with a NULL handle. */
        return airlock_pam_finish(handle, code, AIRLOCK_PAM_STAGE_START, result);
    }
    if (rhost != NULL) {
        code = pam_set_item(handle, PAM_RHOST, rhost);
        if (code != PAM_SUCCESS) return airlock_pam_finish(handle, code, AIRLOCK_PAM_STAGE_START, result);
    }
    code = pam_authenticate(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    if (code != PAM_SUCCESS) return airlock_pam_finish(handle, code, AIRLOCK_PAM_STAGE_AUTHENTICATE, result);
    code = pam_acct_mgmt(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    if (code != PAM_SUCCESS) return airlock_pam_finish(handle, code, AIRLOCK_PAM_STAGE_ACCOUNT, result);
    const void *item = NULL;
    code = pam_get_item(handle, PAM_USER, &item);
    if (code != PAM_SUCCESS) return airlock_pam_finish(handle, code, AIRLOCK_PAM_STAGE_USER, result);
    const char *mapped = item;
    if (mapped == NULL || mapped[0] == '\0' || strlen(mapped) >= sizeof result->user) {
        return airlock_pam_finish(handle, PAM_USER_UNKNOWN, AIRLOCK_PAM_STAGE_USER, result);
    }
    airlock_copy_string(result->user, sizeof result->user, mapped);
    return airlock_pam_finish(handle, PAM_SUCCESS, AIRLOCK_PAM_STAGE_DONE, result);
}

/* MARK: - crypt(3) */

int airlock_crypt_hash(const char *phrase, const char *setting, char *output, size_t output_size) {
    /* struct crypt_data is about 32 KiB: keep it off the (possibly small) thread stack. */
    struct crypt_data *data = calloc(1, sizeof *data);
    if (data == NULL) { errno = ENOMEM; return -1; }
    int status = 0;
    const char *hash = crypt_rn(phrase, setting, data, (int)sizeof *data);
    if (hash == NULL) {
        if (errno == 0) errno = EINVAL;
        status = -1;
    } else {
        size_t length = strlen(hash);
        if (length + 1 > output_size) {
            errno = ERANGE;
            status = -1;
        } else {
            memcpy(output, hash, length + 1);
        }
    }
    int saved = errno;
    explicit_bzero(data, sizeof *data);
    free(data);
    errno = saved;
    return status;
}

int airlock_crypt_gensalt(const char *prefix, unsigned long count, char *output, size_t output_size) {
    if (output_size > (size_t)0x7fffffff) output_size = 0x7fffffff;
    if (crypt_gensalt_rn(prefix, count, NULL, 0, output, (int)output_size) == NULL) {
        if (errno == 0) errno = EINVAL;
        return -1;
    }
    return 0;
}

int airlock_crypt_checksalt(const char *setting) {
    return crypt_checksalt(setting);
}

int airlock_constant_time_equal(const void *a, const void *b, size_t length) {
    const volatile unsigned char *x = a;
    const volatile unsigned char *y = b;
    unsigned char difference = 0;
    for (size_t i = 0; i < length; i++) difference |= (unsigned char)(x[i] ^ y[i]);
    return difference == 0;
}

int airlock_crypt_verify(const char *phrase, const char *stored_hash) {
    char computed[AIRLOCK_CRYPT_OUTPUT_CAPACITY];
    if (airlock_crypt_hash(phrase, stored_hash, computed, sizeof computed) != 0) {
        explicit_bzero(computed, sizeof computed);
        return 0;
    }
    size_t stored_length = strlen(stored_hash);
    size_t computed_length = strlen(computed);
    /* Hash lengths are public (the method fixes them); the bytes are compared in constant time. */
    int equal = stored_length == computed_length
        && airlock_constant_time_equal(computed, stored_hash, stored_length);
    explicit_bzero(computed, sizeof computed);
    return equal;
}

void airlock_secure_zero(void *memory, size_t length) {
    explicit_bzero(memory, length);
}
