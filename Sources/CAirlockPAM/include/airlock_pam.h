/*
 * airlock_pam.h: PAM and crypt(3) for the WS-Man gateway's HTTP Basic authentication.
 *
 * Only what needs C lives here: the PAM conversation function (a C callback that PAM
 * calls with its prompts), the pam_start/pam_authenticate/pam_acct_mgmt/pam_end
 * sequence around it, and libxcrypt's reentrant crypt_rn/crypt_gensalt_rn with their
 * large struct crypt_data, plus a constant-time comparison. Every function is
 * thread safe: nothing here keeps state between calls.
 */
#ifndef AIRLOCK_PAM_H
#define AIRLOCK_PAM_H

#include <stddef.h>

/* MARK: - PAM */

/** Which PAM step produced `airlock_pam_result.code`. */
enum airlock_pam_stage {
    AIRLOCK_PAM_STAGE_START = 0,        /* pam_start / pam_start_confdir */
    AIRLOCK_PAM_STAGE_AUTHENTICATE = 1, /* pam_authenticate */
    AIRLOCK_PAM_STAGE_ACCOUNT = 2,      /* pam_acct_mgmt */
    AIRLOCK_PAM_STAGE_USER = 3,         /* pam_get_item(PAM_USER) after success */
    AIRLOCK_PAM_STAGE_DONE = 4          /* every step succeeded */
};

/** Capacity of `airlock_pam_result.user` (user names longer than this are refused). */
#define AIRLOCK_PAM_USER_CAPACITY 256
/** Capacity of `airlock_pam_result.message`. */
#define AIRLOCK_PAM_MESSAGE_CAPACITY 256

/** What one PAM check found. */
typedef struct airlock_pam_result {
    /** The PAM return code of the last step run (PAM_SUCCESS, 0, when all succeeded). */
    int code;
    /** The step that produced `code` (enum airlock_pam_stage). */
    int stage;
    /** On success: PAM_USER as it ended up after authentication (modules may map it). */
    char user[AIRLOCK_PAM_USER_CAPACITY];
    /** pam_strerror(code), NUL-terminated. */
    char message[AIRLOCK_PAM_MESSAGE_CAPACITY];
} airlock_pam_result;

/**
 * Authenticates `user` with `password` through PAM service `service`:
 * pam_start (pam_start_confdir when `confdir` is not NULL), pam_set_item(PAM_RHOST)
 * when `rhost` is not NULL, pam_authenticate(PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK),
 * pam_acct_mgmt(PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK), pam_get_item(PAM_USER), pam_end.
 * The conversation answers PAM_PROMPT_ECHO_OFF with `password` and PAM_PROMPT_ECHO_ON
 * with `user`. Blocking: PAM modules may sleep (fail delay) for seconds.
 * Returns the PAM code (0 on success) and fills `result`.
 */
int airlock_pam_authenticate(const char *service, const char *confdir, const char *user,
                             const char *password, const char *rhost, airlock_pam_result *result);

/* MARK: - crypt(3) */

/** Capacity of a hash written by airlock_crypt_hash (libxcrypt's CRYPT_OUTPUT_SIZE). */
#define AIRLOCK_CRYPT_OUTPUT_CAPACITY 384
/** Capacity of a setting written by airlock_crypt_gensalt (CRYPT_GENSALT_OUTPUT_SIZE). */
#define AIRLOCK_CRYPT_SETTING_CAPACITY 192

/**
 * crypt_rn(phrase, setting) with a private, zeroed struct crypt_data; copies the hash to
 * `output` (capacity AIRLOCK_CRYPT_OUTPUT_CAPACITY). Returns 0, or -1 with errno set
 * (EINVAL: setting invalid or method unsupported; ERANGE: hash too long; ENOMEM).
 */
int airlock_crypt_hash(const char *phrase, const char *setting, char *output, size_t output_size);

/**
 * crypt_gensalt_rn(prefix, count, NULL (the OS's random bytes), 0): a new setting for
 * `prefix` ("$y$", "$5$", ...) with the method's default cost when `count` is 0.
 * Writes it to `output` (capacity AIRLOCK_CRYPT_SETTING_CAPACITY). Returns 0, or -1 with
 * errno set.
 */
int airlock_crypt_gensalt(const char *prefix, unsigned long count, char *output, size_t output_size);

/** Results of airlock_crypt_checksalt (libxcrypt's CRYPT_SALT_*). */
enum airlock_crypt_salt_status {
    AIRLOCK_CRYPT_SALT_OK = 0,
    AIRLOCK_CRYPT_SALT_INVALID = 1,
    AIRLOCK_CRYPT_SALT_METHOD_DISABLED = 2,
    AIRLOCK_CRYPT_SALT_METHOD_LEGACY = 3,
    AIRLOCK_CRYPT_SALT_TOO_CHEAP = 4
};

/** crypt_checksalt(setting): whether libxcrypt supports and recommends the hash's method. */
int airlock_crypt_checksalt(const char *setting);

/**
 * Hashes `phrase` with the setting (method, cost, salt) of `stored_hash` and compares the
 * result with `stored_hash` in constant time. Returns 1 on a match, 0 otherwise
 * (including when hashing fails). Zeroes its copies of the computed hash.
 */
int airlock_crypt_verify(const char *phrase, const char *stored_hash);

/** 1 when the `length` bytes at `a` and `b` are equal, 0 otherwise; time depends on `length` only. */
int airlock_constant_time_equal(const void *a, const void *b, size_t length);

/** explicit_bzero: zeroes memory in a way the compiler may not remove. */
void airlock_secure_zero(void *memory, size_t length);

#endif /* AIRLOCK_PAM_H */
