/* test_tokenizer.c — tests of the SentencePiece-style tokenizer (engine/tokenizer.h):
 * hand-worked merge orders, byte fallback, token types, BOS/EOS handling, output
 * truncation, argument errors, round trips, and agreement with a naive O(n^2)
 * reference merger on random vocabularies and texts. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

#define SP "\xE2\x96\x81" /* "▁" */
#define UNK 0
#define BOS 1
#define EOS 2
#define BYTE(b) (3 + (b)) /* id of <0xNN> in a vocab built by vb_init(.., true) */

/* ---- vocabulary builder ------------------------------------------------------------ */

typedef struct vb {
    char **tok;
    float *score;
    int32_t *type;
    int n, cap;
} vb;

static int vb_add(vb *v, const char *piece, float score, int32_t type) {
    cr_assert_lt(v->n, v->cap);
    v->tok[v->n] = strdup(piece);
    cr_assert_not_null(v->tok[v->n]);
    v->score[v->n] = score;
    v->type[v->n] = type;
    return v->n++;
}

/* <unk>=0, <s>=1, </s>=2, then (if with_bytes) <0x00>..<0xFF> = 3..258. */
static void vb_init(vb *v, int cap, bool with_bytes) {
    v->cap = cap;
    v->n = 0;
    v->tok = calloc((size_t)cap, sizeof *v->tok);
    v->score = calloc((size_t)cap, sizeof *v->score);
    v->type = calloc((size_t)cap, sizeof *v->type);
    cr_assert(v->tok && v->score && v->type);
    vb_add(v, "<unk>", 0, IBEX_TOKEN_UNKNOWN);
    vb_add(v, "<s>", 0, IBEX_TOKEN_CONTROL);
    vb_add(v, "</s>", 0, IBEX_TOKEN_CONTROL);
    if (with_bytes) {
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            vb_add(v, name, 0, IBEX_TOKEN_BYTE);
        }
    }
}

static ibex_tokenizer *vb_build(const vb *v, int32_t unk) {
    ibex_err err = {0};
    ibex_tokenizer *t = ibex_tokenizer_new((const char *const *)v->tok, v->score, v->type, v->n,
                                           BOS, EOS, unk, true, &err);
    cr_assert_not_null(t, "ibex_tokenizer_new failed: %s", err.msg);
    return t;
}

static void vb_free(vb *v) {
    for (int i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    free(v->score);
    free(v->type);
}

/* ---- helpers ----------------------------------------------------------------------- */

static int64_t enc(const ibex_tokenizer *t, const char *s, size_t len, bool bos, int32_t *out,
                   int64_t cap) {
    ibex_err err = {0};
    int64_t n = ibex_tokenizer_encode(t, s, len, bos, out, cap, &err);
    cr_assert_geq(n, 0, "encode failed: %s", err.msg);
    return n;
}

static void expect_ids(const ibex_tokenizer *t, const char *s, bool bos, const int32_t *want,
                       int n_want) {
    int32_t got[256];
    int64_t n = enc(t, s, strlen(s), bos, got, 256);
    cr_assert_eq(n, n_want, "encode(\"%s\"): %lld tokens, want %d", s, (long long)n, n_want);
    for (int i = 0; i < n_want; i++)
        cr_assert_eq(got[i], want[i], "encode(\"%s\")[%d] = %d, want %d", s, i, got[i], want[i]);
}

#define EXPECT(t, s, bos, ...)                                                 \
    do {                                                                       \
        const int32_t want_[] = {__VA_ARGS__};                                 \
        expect_ids((t), (s), (bos), want_, (int)(sizeof want_ / sizeof *want_)); \
    } while (0)

/* decode(encode(s)) == s for s[0..len), with and without BOS, and with EOS appended. */
static void expect_roundtrip(const ibex_tokenizer *t, const char *s, size_t len) {
    int64_t cap = 4 * (int64_t)len + 8;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    cr_assert_not_null(ids);
    for (int bos = 0; bos < 2; bos++) {
        int64_t n = enc(t, s, len, bos, ids, cap);
        cr_assert_lt(n, cap);
        ids[n] = EOS;
        for (int eos = 0; eos < 2; eos++) {
            char *back = ibex_tokenizer_decode(t, ids, n + eos);
            cr_assert_not_null(back);
            cr_assert(strlen(back) == len && memcmp(back, s, len) == 0,
                      "round trip of %zu bytes (bos %d eos %d) gave %zu bytes \"%s\"", len, bos,
                      eos, strlen(back), back);
            free(back);
        }
    }
    free(ids);
}

/* The "hello" vocabulary: scores make ll < he < llo < hello < ▁hello merge in that order,
 * and ▁h lose to he. */
static ibex_tokenizer *hello_vocab(vb *v, int32_t ids[11]) {
    vb_init(v, 400, true);
    static const char *p[] = {SP, "h", "e", "l", "o", SP "h", "he", "ll", "llo", "hello",
                              SP "hello"};
    static const float s[] = {-10, -20, -20, -20, -20, -6, -2, -1, -3, -4, -5};
    for (int i = 0; i < 11; i++) ids[i] = vb_add(v, p[i], s[i], IBEX_TOKEN_NORMAL);
    return vb_build(v, UNK);
}
enum { H_SP, H_h, H_e, H_l, H_o, H_SPh, H_he, H_ll, H_llo, H_hello, H_SPhello };

/* ---- hand-worked merges ------------------------------------------------------------ */

Test(tokenizer, merge_chain_follows_scores) {
    vb v;
    int32_t id[11];
    ibex_tokenizer *t = hello_vocab(&v, id);
    /* ▁ h e l l o: ll(-1), he(-2), llo(-3), hello(-4), ▁hello(-5); ▁h(-6) goes stale. */
    EXPECT(t, "hello", false, id[H_SPhello]);
    /* ▁ h e l l: ll, then he; ▁h is stale once h became he. */
    EXPECT(t, "hell", false, id[H_SP], id[H_he], id[H_ll]);
    /* ▁ h o: only ▁h is a piece. */
    EXPECT(t, "ho", false, id[H_SPh], id[H_o]);
    EXPECT(t, "hello hello", false, id[H_SPhello], id[H_SPhello]);
    EXPECT(t, "hello", true, BOS, id[H_SPhello]);
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, higher_score_beats_leftmost) {
    vb v;
    vb_init(&v, 300, true);
    int sp = vb_add(&v, SP, -1, IBEX_TOKEN_NORMAL);
    int a = vb_add(&v, "a", -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "b", -1, IBEX_TOKEN_NORMAL);
    int c = vb_add(&v, "c", -1, IBEX_TOKEN_NORMAL);
    int ab = vb_add(&v, "ab", -5, IBEX_TOKEN_NORMAL);
    int bc = vb_add(&v, "bc", -1, IBEX_TOKEN_NORMAL);
    ibex_tokenizer *t = vb_build(&v, UNK);
    EXPECT(t, "abc", false, sp, a, bc);
    EXPECT(t, "ab", false, sp, ab);
    EXPECT(t, "abcab", false, sp, a, bc, ab);
    (void)c;
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, tie_goes_to_leftmost) {
    vb v;
    vb_init(&v, 300, true);
    int sp = vb_add(&v, SP, -1, IBEX_TOKEN_NORMAL);
    int a = vb_add(&v, "a", -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "b", -1, IBEX_TOKEN_NORMAL);
    int c = vb_add(&v, "c", -1, IBEX_TOKEN_NORMAL);
    int ab = vb_add(&v, "ab", -2, IBEX_TOKEN_NORMAL);
    vb_add(&v, "bc", -2, IBEX_TOKEN_NORMAL);
    int aa = vb_add(&v, "aa", -3, IBEX_TOKEN_NORMAL);
    ibex_tokenizer *t = vb_build(&v, UNK);
    EXPECT(t, "abc", false, sp, ab, c);
    EXPECT(t, "aaa", false, sp, aa, a);
    EXPECT(t, "aaaaa", false, sp, aa, aa, a);
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, dummy_prefix_and_spaces) {
    vb v;
    vb_init(&v, 300, true);
    int sp = vb_add(&v, SP, -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "a", -1, IBEX_TOKEN_NORMAL);
    int spa = vb_add(&v, SP "a", -2, IBEX_TOKEN_NORMAL);
    int spsp = vb_add(&v, SP SP, -3, IBEX_TOKEN_NORMAL);
    ibex_tokenizer *t = vb_build(&v, UNK);
    EXPECT(t, "a", false, spa);
    EXPECT(t, " a", false, sp, spa);     /* ▁▁a: ▁a (-2) beats ▁▁ (-3) */
    EXPECT(t, "a a", false, spa, spa);
    EXPECT(t, "   ", false, spsp, spsp); /* four ▁ */
    int32_t out[4];
    cr_assert_eq(enc(t, "", 0, false, out, 4), 0, "empty text gives no tokens");
    cr_assert_eq(enc(t, "", 0, true, out, 4), 1);
    cr_assert_eq(out[0], BOS);
    ibex_tokenizer_free(t);
    vb_free(&v);
}

/* ---- byte fallback and types ------------------------------------------------------- */

Test(tokenizer, byte_fallback_for_unknown_characters) {
    vb v;
    int32_t id[11];
    ibex_tokenizer *t = hello_vocab(&v, id);
    EXPECT(t, "\xC3\xA9", false, id[H_SP], BYTE(0xC3), BYTE(0xA9));          /* é */
    EXPECT(t, "\xF0\x9F\x98\x80", false, id[H_SP], BYTE(0xF0), BYTE(0x9F), BYTE(0x98),
           BYTE(0x80));                                                      /* 😀 */
    EXPECT(t, "h\xC3\xA9", false, id[H_SPh], BYTE(0xC3), BYTE(0xA9));
    EXPECT(t, "\t", false, id[H_SP], BYTE('\t'));
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, multibyte_character_in_vocab_is_one_symbol) {
    vb v;
    vb_init(&v, 300, true);
    int sp = vb_add(&v, SP, -1, IBEX_TOKEN_NORMAL);
    int e_acute = vb_add(&v, "\xC3\xA9", -1, IBEX_TOKEN_NORMAL);
    int sp_e = vb_add(&v, SP "\xC3\xA9", -2, IBEX_TOKEN_NORMAL);
    ibex_tokenizer *t = vb_build(&v, UNK);
    EXPECT(t, "\xC3\xA9", false, sp_e);
    EXPECT(t, "\xC3\xA9\xC3\xA9", false, sp_e, e_acute);
    (void)sp;
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, invalid_utf8_bytes_are_single_characters) {
    vb v;
    int32_t id[11];
    vb_init(&v, 400, true);
    static const char *p[] = {SP, "h", "e", "l", "o", SP "h", "he", "ll", "llo", "hello",
                              SP "hello"};
    static const float s[] = {-10, -20, -20, -20, -20, -6, -2, -1, -3, -4, -5};
    for (int i = 0; i < 11; i++) id[i] = vb_add(&v, p[i], s[i], IBEX_TOKEN_NORMAL);
    /* Pieces made of stray continuation bytes: they can only match if the splitter
     * cut an ill-formed sequence after its first byte (a lax splitter that trusts the
     * lead byte would swallow them into one "character" and emit bytes instead). */
    int c80 = vb_add(&v, "\x80", -1, IBEX_TOKEN_NORMAL);
    int c82 = vb_add(&v, "\x82", -1, IBEX_TOKEN_NORMAL);
    int cA080 = vb_add(&v, "\xA0\x80", -1, IBEX_TOKEN_NORMAL);
    ibex_tokenizer *t = vb_build(&v, UNK);
    EXPECT(t, "\xFF", false, id[H_SP], BYTE(0xFF));
    EXPECT(t, "\xC3", false, id[H_SP], BYTE(0xC3));
    EXPECT(t, "\xC3he", false, id[H_SP], BYTE(0xC3), id[H_he]);       /* lead + ASCII */
    EXPECT(t, "\x80", false, id[H_SP], c80);
    EXPECT(t, "\xC0\x80", false, id[H_SP], BYTE(0xC0), c80);          /* overlong NUL */
    EXPECT(t, "\xED\xA0\x80", false, id[H_SP], BYTE(0xED), cA080);   /* surrogate */
    EXPECT(t, "\xF4\x90\x80\x80", false, id[H_SP], BYTE(0xF4), BYTE(0x90), c80, c80);
    EXPECT(t, "\xE2\x82", false, id[H_SP], BYTE(0xE2), c82);          /* truncated */
    EXPECT(t, "\xE2\x82\xAC", false, id[H_SP], BYTE(0xE2), BYTE(0x82), BYTE(0xAC)); /* € */
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, missing_byte_token_gives_unk) {
    vb v;
    vb_init(&v, 16, false);
    int sp = vb_add(&v, SP, -1, IBEX_TOKEN_NORMAL);
    int a = vb_add(&v, "a", -1, IBEX_TOKEN_NORMAL);
    ibex_tokenizer *t = vb_build(&v, UNK);
    EXPECT(t, "a\xC3\xA9", false, sp, a, UNK, UNK);
    ibex_tokenizer_free(t);
    /* With no unk either, the bytes are dropped. */
    t = vb_build(&v, -1);
    EXPECT(t, "a\xC3\xA9", false, sp, a);
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, only_normal_and_user_defined_tokens_merge) {
    vb v;
    vb_init(&v, 300, true);
    int sp = vb_add(&v, SP, -1, IBEX_TOKEN_NORMAL);
    int x = vb_add(&v, "x", -1, IBEX_TOKEN_NORMAL);
    int y = vb_add(&v, "y", -1, IBEX_TOKEN_NORMAL);
    int z = vb_add(&v, "z", -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "xy", 10, IBEX_TOKEN_CONTROL);
    vb_add(&v, "yz", 10, IBEX_TOKEN_UNUSED);
    vb_add(&v, "zx", 10, IBEX_TOKEN_UNKNOWN);
    int zz = vb_add(&v, "zz", -1, IBEX_TOKEN_USER_DEFINED);
    int lt = vb_add(&v, "<", -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "s", -1, IBEX_TOKEN_NORMAL);
    int gt = vb_add(&v, ">", -1, IBEX_TOKEN_NORMAL);
    int lts = vb_add(&v, "<s", -1, IBEX_TOKEN_NORMAL); /* "<s" + ">" is <s> = BOS */
    vb_add(&v, "<0x41", -1, IBEX_TOKEN_NORMAL);
    ibex_tokenizer *t = vb_build(&v, UNK);
    EXPECT(t, "xyzx", false, sp, x, y, z, x);
    EXPECT(t, "zz", false, sp, zz);
    EXPECT(t, "<s>", false, sp, lts, gt);
    /* "<0x41" + ">" would be the BYTE token <0x41>. */
    int32_t out[16];
    int64_t n = enc(t, "<0x41>", 6, false, out, 16);
    for (int64_t i = 0; i < n; i++) cr_assert_neq(out[i], BYTE(0x41));
    cr_assert_eq(out[n - 1], gt);
    (void)lt;
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, duplicate_piece_first_mergeable_id_wins) {
    vb v;
    vb_init(&v, 300, true);
    int sp = vb_add(&v, SP, -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "a", -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "b", -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "ab", -1, IBEX_TOKEN_CONTROL);
    int ab1 = vb_add(&v, "ab", -1, IBEX_TOKEN_NORMAL);
    vb_add(&v, "ab", -1, IBEX_TOKEN_NORMAL);
    ibex_tokenizer *t = vb_build(&v, UNK);
    EXPECT(t, "ab", false, sp, ab1);
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, null_types_detect_uppercase_byte_pieces) {
    const char *tok[] = {"<unk>", "<s>", "</s>", SP, "<0xC3>", "<0xA9>", "<0xc3>", "a"};
    const float sc[] = {0, 0, 0, -1, 0, 0, 0, -1};
    ibex_err err = {0};
    ibex_tokenizer *t = ibex_tokenizer_new(tok, sc, NULL, 8, 1, 2, 0, false, &err);
    cr_assert_not_null(t, "%s", err.msg);
    EXPECT(t, "\xC3\xA9" "a", false, 3, 4, 5, 7);
    char buf[16];
    cr_assert_eq(ibex_tokenizer_decode_piece(t, 3, 4, buf, sizeof buf), 1);
    cr_assert_eq((unsigned char)buf[0], 0xC3);
    /* Lowercase hex is an ordinary piece when types are inferred. */
    size_t k = ibex_tokenizer_decode_piece(t, 3, 6, buf, sizeof buf);
    cr_assert(k == 6 && memcmp(buf, "<0xc3>", 6) == 0);
    cr_assert_eq(ibex_tokenizer_add_bos(t), false);
    cr_assert_eq(ibex_tokenizer_n_vocab(t), 8);
    ibex_tokenizer_free(t);
}

/* ---- BOS/EOS, decoding, truncation ------------------------------------------------- */

Test(tokenizer, bos_added_iff_requested_and_skipped_by_decode) {
    vb v;
    int32_t id[11];
    ibex_tokenizer *t = hello_vocab(&v, id);
    cr_assert_eq(ibex_tokenizer_bos(t), BOS);
    cr_assert_eq(ibex_tokenizer_eos(t), EOS);
    cr_assert(ibex_tokenizer_add_bos(t));
    int32_t out[8];
    cr_assert_eq(enc(t, "hello", 5, false, out, 8), 1);
    cr_assert_eq(out[0], id[H_SPhello]);
    cr_assert_eq(enc(t, "hello", 5, true, out, 8), 2);
    cr_assert_eq(out[0], BOS);

    int32_t seq[] = {BOS, id[H_SPhello], id[H_SPhello], EOS};
    char *s = ibex_tokenizer_decode(t, seq, 4);
    cr_assert_str_eq(s, "hello hello");
    free(s);
    s = ibex_tokenizer_decode(t, seq + 1, 2);
    cr_assert_str_eq(s, "hello hello");
    free(s);
    s = ibex_tokenizer_decode(t, seq, 0);
    cr_assert_str_eq(s, "");
    free(s);

    char buf[16];
    cr_assert_eq(ibex_tokenizer_decode_piece(t, -1, BOS, buf, sizeof buf), 0);
    cr_assert_eq(ibex_tokenizer_decode_piece(t, -1, EOS, buf, sizeof buf), 0);
    /* The leading space goes only at the start or right after BOS. */
    size_t k = ibex_tokenizer_decode_piece(t, -1, id[H_SPhello], buf, sizeof buf);
    cr_assert(k == 5 && memcmp(buf, "hello", 5) == 0);
    k = ibex_tokenizer_decode_piece(t, BOS, id[H_SPhello], buf, sizeof buf);
    cr_assert(k == 5 && memcmp(buf, "hello", 5) == 0);
    k = ibex_tokenizer_decode_piece(t, id[H_he], id[H_SPhello], buf, sizeof buf);
    cr_assert(k == 6 && memcmp(buf, " hello", 6) == 0);
    k = ibex_tokenizer_decode_piece(t, id[H_he], BYTE(0xC3), buf, sizeof buf);
    cr_assert(k == 1 && (unsigned char)buf[0] == 0xC3);
    k = ibex_tokenizer_decode_piece(t, id[H_he], UNK, buf, sizeof buf);
    cr_assert(k == 5 && memcmp(buf, "<unk>", 5) == 0);
    cr_assert_eq(ibex_tokenizer_decode_piece(t, -1, 100000, buf, sizeof buf), 0);
    ibex_tokenizer_free(t);
    vb_free(&v);
}

Test(tokenizer, output_truncated_at_cap_but_count_is_full) {
    vb v;
    int32_t id[11];
    ibex_tokenizer *t = hello_vocab(&v, id);
    int32_t out[4] = {-7, -7, -7, -7};
    /* BOS ▁ he ll ▁hello */
    cr_assert_eq(enc(t, "hell hello", 10, true, out, 2), 5);
    cr_assert_eq(out[0], BOS);
    cr_assert_eq(out[1], id[H_SP]);
    cr_assert_eq(out[2], -7, "wrote past cap");
    cr_assert_eq(enc(t, "hell hello", 10, true, NULL, 0), 5);

    char buf[8];
    memset(buf, '#', sizeof buf);
    size_t k = ibex_tokenizer_decode_piece(t, id[H_he], id[H_SPhello], buf, 3);
    cr_assert_eq(k, 6);
    cr_assert(memcmp(buf, " he#", 4) == 0, "decode_piece wrote past cap");
    cr_assert_eq(ibex_tokenizer_decode_piece(t, id[H_he], id[H_SPhello], NULL, 0), 6);
    ibex_tokenizer_free(t);
    vb_free(&v);
}

/* ---- errors ------------------------------------------------------------------------ */

Test(tokenizer, construction_errors) {
    const char *tok[] = {"<unk>", "<s>", "</s>", NULL, "a"};
    const float sc[] = {0, 0, 0, 0, 0};
    const int32_t ty[] = {2, 3, 3, 1, 9};
    ibex_err err = {0};

    cr_assert_null(ibex_tokenizer_new(tok, sc, NULL, 0, -1, -1, -1, false, &err));
    cr_assert_eq(err.status, IBEX_ERR_INVALID);
    cr_assert(strstr(err.msg, "n_vocab"), "%s", err.msg);

    err = (ibex_err){0};
    cr_assert_null(ibex_tokenizer_new(tok, sc, NULL, 3, 3, 2, 0, false, &err));
    cr_assert_eq(err.status, IBEX_ERR_INVALID);
    cr_assert(strstr(err.msg, "bos"), "%s", err.msg);

    err = (ibex_err){0};
    cr_assert_null(ibex_tokenizer_new(tok, sc, NULL, 3, 1, -2, 0, false, &err));
    cr_assert(strstr(err.msg, "eos"), "%s", err.msg);

    err = (ibex_err){0};
    cr_assert_null(ibex_tokenizer_new(tok, sc, NULL, 3, 1, 2, 5, false, &err));
    cr_assert(strstr(err.msg, "unk"), "%s", err.msg);

    err = (ibex_err){0};
    cr_assert_null(ibex_tokenizer_new(tok, sc, NULL, 5, 1, 2, 0, false, &err));
    cr_assert_eq(err.status, IBEX_ERR_INVALID);
    cr_assert(strstr(err.msg, "token 3"), "%s", err.msg);

    const char *tok2[] = {"<unk>", "<s>", "</s>", "b", "a"};
    err = (ibex_err){0};
    cr_assert_null(ibex_tokenizer_new(tok2, sc, ty, 5, 1, 2, 0, false, &err));
    cr_assert(strstr(err.msg, "token 4"), "%s", err.msg);

    err = (ibex_err){0};
    cr_assert_null(ibex_tokenizer_new(NULL, sc, NULL, 5, 1, 2, 0, false, &err));
    cr_assert_eq(err.status, IBEX_ERR_INVALID);

    /* -1 means "none" and is accepted; scores may be NULL. */
    ibex_tokenizer *t = ibex_tokenizer_new(tok2, NULL, NULL, 5, -1, -1, -1, false, &err);
    cr_assert_not_null(t, "%s", err.msg);
    cr_assert_eq(ibex_tokenizer_bos(t), -1);
    int32_t out[4];
    cr_assert_eq(enc(t, "a", 1, true, out, 4), 1, "no BOS to add");
    ibex_tokenizer_free(t);
}

/* ---- round trips ------------------------------------------------------------------- */

Test(tokenizer, roundtrip_tricky_strings) {
    vb v;
    int32_t id[11];
    ibex_tokenizer *t = hello_vocab(&v, id);
    static const char *cases[] = {
        "", " ", "  ", "  leading", "trailing ", "a\tb\n", "hello world", "hello  hello",
        "h\xC3\xA9llo w\xC3\xB6rld \xF0\x9F\x98\x80", "\xE6\x97\xA5\xE6\x9C\xAC", "\xFF",
        "\xC3", " \xC3", "\xC3 ", "\xF0\x9F", "\xED\xA0\x80", " \xFF\xFE ", "\x01\x7F",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_roundtrip(t, cases[i], strlen(cases[i]));
    ibex_tokenizer_free(t);
    vb_free(&v);
}

static uint64_t rng_next(uint64_t *s) {
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* A NUL-free random string of up to max_len bytes mixing spaces, vocabulary letters,
 * multi-byte characters and arbitrary bytes; never contains "▁" (see tokenizer.c). */
static size_t random_text(uint64_t *rng, char *buf, size_t max_len) {
    static const char *frag[] = {" ", " ", "a", "b", "c", "h", "e", "l", "o", "hello",
                                 "\xC3\xA9", "\xF0\x9F\x98\x80", SP};
    size_t n = 0, target = rng_next(rng) % (max_len + 1);
    while (n < target) {
        uint64_t r = rng_next(rng) % 16;
        if (r < 13) {
            size_t k = strlen(frag[r]);
            if (n + k > max_len) break;
            memcpy(buf + n, frag[r], k);
            n += k;
        } else {
            buf[n++] = (char)(1 + rng_next(rng) % 255);
        }
    }
    for (size_t i = 0; i + 2 < n; i++)
        if (memcmp(buf + i, SP, 3) == 0) buf[i + 2] = (char)0x82; /* "▂" instead */
    return n;
}

Test(tokenizer, roundtrip_random_byte_strings) {
    vb v;
    int32_t id[11];
    ibex_tokenizer *t = hello_vocab(&v, id);
    uint64_t rng = 0x1234567887654321ull;
    char buf[96];
    for (int i = 0; i < 1000; i++) {
        size_t n = random_text(&rng, buf, sizeof buf);
        expect_roundtrip(t, buf, n);
    }
    ibex_tokenizer_free(t);
    vb_free(&v);
}

/* ---- naive reference --------------------------------------------------------------- */

/* Mergeable pieces sorted by (bytes, id), for a bsearch lookup independent of the
 * tokenizer's hash table. */
typedef struct ref_piece {
    const char *s;
    size_t n;
    int32_t id;
} ref_piece;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_piece *a = pa, *b = pb;
    size_t m = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->s, b->s, m);
    if (c) return c;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

typedef struct ref_vocab {
    ref_piece *p;
    int n;
    const vb *v;
} ref_vocab;

static ref_vocab ref_make(const vb *v) {
    ref_vocab r = {malloc((size_t)v->n * sizeof(ref_piece)), 0, v};
    cr_assert_not_null(r.p);
    for (int i = 0; i < v->n; i++)
        if (v->type[i] == IBEX_TOKEN_NORMAL || v->type[i] == IBEX_TOKEN_USER_DEFINED)
            r.p[r.n++] = (ref_piece){v->tok[i], strlen(v->tok[i]), i};
    qsort(r.p, (size_t)r.n, sizeof *r.p, ref_cmp);
    return r;
}

/* Lowest mergeable id whose piece is s[0..n), or -1 (binary search for the first). */
static int32_t ref_find(const ref_vocab *r, const char *s, size_t n) {
    ref_piece key = {s, n, -1};
    int lo = 0, hi = r->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (ref_cmp(&r->p[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < r->n && r->p[lo].n == n && memcmp(r->p[lo].s, s, n) == 0) return r->p[lo].id;
    return -1;
}

/* Length of the UTF-8 character at s (decode and range-check the code point). */
static size_t ref_char_len(const unsigned char *s, size_t avail) {
    size_t k;
    uint32_t cp, min;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xE0) == 0xC0) k = 2, cp = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0) k = 3, cp = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0) k = 4, cp = s[0] & 0x07, min = 0x10000;
    else return 1;
    if (avail < k) return 1;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 1;
    return k;
}

/* Naive O(n^2) SentencePiece encode: rescan all adjacent pairs after every merge. */
static int64_t ref_encode(const ref_vocab *r, int32_t unk, const char *text, size_t len,
                          int32_t *out) {
    if (len == 0) return 0;
    char *norm = malloc(3 * len + 3);
    size_t *off = malloc((3 * len + 4) * sizeof *off); /* symbol i is norm[off[i]..off[i+1]) */
    cr_assert(norm && off);
    size_t nl = 0;
    memcpy(norm, SP, 3);
    nl = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(norm + nl, SP, 3);
            nl += 3;
        } else {
            norm[nl++] = text[i];
        }
    }
    size_t ns = 0;
    for (size_t o = 0; o < nl; o += ref_char_len((const unsigned char *)norm + o, nl - o))
        off[ns++] = o;
    off[ns] = nl;
    for (;;) {
        size_t best = SIZE_MAX;
        float best_score = 0;
        for (size_t i = 0; i + 1 < ns; i++) {
            int32_t id = ref_find(r, norm + off[i], off[i + 2] - off[i]);
            if (id >= 0 && (best == SIZE_MAX || r->v->score[id] > best_score)) {
                best = i;
                best_score = r->v->score[id];
            }
        }
        if (best == SIZE_MAX) break;
        memmove(off + best + 1, off + best + 2, (ns - best - 1) * sizeof *off);
        ns--;
    }
    int64_t n = 0;
    for (size_t i = 0; i < ns; i++) {
        int32_t id = ref_find(r, norm + off[i], off[i + 1] - off[i]);
        if (id >= 0) {
            out[n++] = id;
            continue;
        }
        for (size_t k = off[i]; k < off[i + 1]; k++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", (unsigned char)norm[k]);
            int32_t b = -1;
            for (int j = 0; j < r->v->n && b < 0; j++)
                if (r->v->type[j] == IBEX_TOKEN_BYTE && strcmp(r->v->tok[j], name) == 0) b = j;
            if (b >= 0)
                out[n++] = b;
            else if (unk >= 0)
                out[n++] = unk;
        }
    }
    free(norm);
    free(off);
    return n;
}

static void expect_same_as_reference(const ibex_tokenizer *t, const ref_vocab *r, const char *s,
                                     size_t len) {
    size_t cap = 4 * len + 8;
    int32_t *got = malloc(cap * sizeof *got), *want = malloc(cap * sizeof *want);
    cr_assert(got && want);
    int64_t n = enc(t, s, len, false, got, (int64_t)cap);
    int64_t m = ref_encode(r, UNK, s, len, want);
    cr_assert_eq(n, m, "token count %lld, reference %lld (text of %zu bytes)", (long long)n,
                 (long long)m, len);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "token %lld: %d, reference %d", (long long)i, got[i],
                     want[i]);
    free(got);
    free(want);
}

Test(tokenizer, random_vocab_matches_naive_reference) {
    uint64_t rng = 42;
    static const char *alpha[] = {SP, "a", "b", "c", "h", "e", "\xC3\xA9"};
    char piece[64], text[128];
    for (int round = 0; round < 10; round++) {
        vb v;
        vb_init(&v, 600, true);
        for (int i = 0; i < 7; i++) vb_add(&v, alpha[i], -100, IBEX_TOKEN_NORMAL);
        for (int i = 0; i < 250; i++) {
            size_t k = 2 + rng_next(&rng) % 4, n = 0;
            for (size_t j = 0; j < k; j++) {
                const char *a = alpha[rng_next(&rng) % 7];
                memcpy(piece + n, a, strlen(a));
                n += strlen(a);
            }
            piece[n] = '\0';
            /* Few distinct scores, so ties are common. */
            float score = -(float)(rng_next(&rng) % 4);
            uint64_t r = rng_next(&rng) % 20;
            int32_t type = r == 0 ? IBEX_TOKEN_CONTROL
                         : r == 1 ? IBEX_TOKEN_USER_DEFINED
                         : r == 2 ? IBEX_TOKEN_UNUSED
                                  : IBEX_TOKEN_NORMAL;
            vb_add(&v, piece, score, type);
        }
        ibex_tokenizer *t = vb_build(&v, UNK);
        ref_vocab r = ref_make(&v);
        for (int i = 0; i < 100; i++) {
            size_t n = random_text(&rng, text, sizeof text);
            expect_same_as_reference(t, &r, text, n);
            expect_roundtrip(t, text, n);
        }
        free(r.p);
        ibex_tokenizer_free(t);
        vb_free(&v);
    }
}

/* A 32000-token vocabulary and a 100 KB text: exercises the hash table and the heap at
 * realistic sizes (no timing: benchmarks live in scenarios). */
Test(tokenizer, large_vocab_large_text) {
    vb v;
    vb_init(&v, 32000, true);
    uint64_t rng = 7;
    char piece[16];
    vb_add(&v, SP, -50, IBEX_TOKEN_NORMAL);
    for (int a = 0; a < 26; a++) {
        snprintf(piece, sizeof piece, "%c", 'a' + a);
        vb_add(&v, piece, -40, IBEX_TOKEN_NORMAL);
        snprintf(piece, sizeof piece, SP "%c", 'a' + a);
        vb_add(&v, piece, -(float)(rng_next(&rng) % 1000) / 100.0f, IBEX_TOKEN_NORMAL);
    }
    for (int a = 0; a < 26; a++)
        for (int b = 0; b < 26; b++) {
            snprintf(piece, sizeof piece, "%c%c", 'a' + a, 'a' + b);
            vb_add(&v, piece, -(float)(rng_next(&rng) % 1000) / 100.0f, IBEX_TOKEN_NORMAL);
            snprintf(piece, sizeof piece, SP "%c%c", 'a' + a, 'a' + b);
            vb_add(&v, piece, -(float)(rng_next(&rng) % 1000) / 100.0f, IBEX_TOKEN_NORMAL);
        }
    for (int i = 0; v.n < v.cap; i++) {
        int a = i / 676 % 26, b = i / 26 % 26, c = i % 26;
        if (i < 17576)
            snprintf(piece, sizeof piece, "%c%c%c", 'a' + a, 'a' + b, 'a' + c);
        else
            snprintf(piece, sizeof piece, SP "%c%c%c", 'a' + a, 'a' + b, 'a' + c);
        vb_add(&v, piece, -(float)(rng_next(&rng) % 1000) / 100.0f, IBEX_TOKEN_NORMAL);
    }
    cr_assert_eq(v.n, 32000);
    ibex_tokenizer *t = vb_build(&v, UNK);

    size_t len = 100 * 1024;
    char *text = malloc(len);
    cr_assert_not_null(text);
    for (size_t i = 0; i < len; i++) {
        uint64_t r = rng_next(&rng) % 32;
        text[i] = r < 26 ? (char)('a' + r) : r < 31 ? ' ' : ',';
    }
    int64_t n = enc(t, text, len, true, NULL, 0);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    cr_assert_not_null(ids);
    cr_assert_eq(enc(t, text, len, true, ids, n), n);
    cr_assert_lt(n, (int64_t)len / 2, "%lld tokens for %zu bytes: merges missing", (long long)n,
                 len);
    char *back = ibex_tokenizer_decode(t, ids, n);
    cr_assert(back && strlen(back) == len && memcmp(back, text, len) == 0);
    free(back);
    free(ids);

    ref_vocab r = ref_make(&v);
    expect_same_as_reference(t, &r, text, 2048);
    free(r.p);
    free(text);
    ibex_tokenizer_free(t);
    vb_free(&v);
}
