/* vocab_builtin: see vocab_builtin.h. */
#include "model/vocab_builtin.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* A few of GPT-2's first merges, each listed with the piece it makes; every piece
 * is built from earlier tokens, so BPE reaches it one merge at a time. */
static const char *const vocab_merges[][2] = {
    {"Ġ t", "Ġt"},   {"Ġ a", "Ġa"},   {"h e", "he"},     {"i n", "in"},     {"r e", "re"},
    {"o n", "on"},   {"Ġt he", "Ġthe"}, {"e r", "er"},   {"Ġ s", "Ġs"},     {"a t", "at"},
    {"Ġ w", "Ġw"},   {"Ġ o", "Ġo"},   {"e n", "en"},     {"Ġ c", "Ġc"},     {"i t", "it"},
    {"i s", "is"},   {"a n", "an"},   {"o r", "or"},     {"e s", "es"},     {"Ġ b", "Ġb"},
    {"e d", "ed"},   {"Ġ f", "Ġf"},   {"in g", "ing"},   {"Ġ p", "Ġp"},     {"o u", "ou"},
    {"Ġa n", "Ġan"}, {"a l", "al"},   {"a r", "ar"},     {"Ġt o", "Ġto"},   {"Ġ m", "Ġm"},
    {"Ġo f", "Ġof"}, {"Ġ in", "Ġin"}, {"Ġ d", "Ġd"},     {"Ġ h", "Ġh"},     {"Ġan d", "Ġand"},
};
#define VOCAB_N_MERGES (sizeof vocab_merges / sizeof vocab_merges[0])

enum { TYPE_NORMAL = 1, TYPE_CONTROL = 3, TYPE_USER_DEFINED = 4 };

static const struct {
    const char *text;
    int32_t type;
} vocab_special[] = {
    {"<｜begin▁of▁sentence｜>", TYPE_CONTROL}, /* BOS */
    {"<｜end▁of▁sentence｜>", TYPE_CONTROL},   /* EOS, padding */
    {"<｜User｜>", TYPE_CONTROL},
    {"<｜Assistant｜>", TYPE_CONTROL},
    {"<think>", TYPE_USER_DEFINED},
    {"</think>", TYPE_USER_DEFINED},
};
#define VOCAB_N_SPECIAL (sizeof vocab_special / sizeof vocab_special[0])
#define VOCAB_BYTES 256
#define VOCAB_FIRST_SPECIAL (VOCAB_BYTES + VOCAB_N_MERGES)
#define VOCAB_BOS ((uint32_t)VOCAB_FIRST_SPECIAL)
#define VOCAB_EOS ((uint32_t)VOCAB_FIRST_SPECIAL + 1)
#define VOCAB_N (VOCAB_FIRST_SPECIAL + VOCAB_N_SPECIAL)

/* DeepSeek-R1-Distill chat template (llama.cpp's models/templates copy, which also
 * handles tool calls), as quoted in research/serving.md section 3.4. */
static const char vocab_chat_template[] =
    "{% if not add_generation_prompt is defined -%}\n"
    "  {%- set add_generation_prompt = false -%}\n"
    "{%- endif -%}\n"
    "{%- set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') -%}\n"
    "{%- for message in messages -%}\n"
    "  {%- if message['role'] == 'system' -%}\n"
    "    {%- set ns.system_prompt = message['content'] -%}\n"
    "  {%- endif -%}\n"
    "{%- endfor -%}{{bos_token}}{{ns.system_prompt}}\n"
    "{%- for message in messages -%}\n"
    "  {%- if message['role'] == 'user' -%}\n"
    "    {%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'assistant' and message['tool_calls'] -%}\n"
    "    {%- set ns.is_tool = false -%}\n"
    "    {%- for tool in message['tool_calls']-%}\n"
    "      {%- if not ns.is_first -%}\n"
    "        {{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}\n"
    "        {%- set ns.is_first = true -%}\n"
    "      {%- else -%}\n"
    "        {{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}\n"
    "      {%- endif -%}\n"
    "    {%- endfor -%}\n"
    "    {{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'assistant' and message['content'] is not none -%}\n"
    "    {%- if ns.is_tool -%}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}\n"
    "      {%- set ns.is_tool = false -%}\n"
    "    {%- else -%}\n"
    "      {%- set content = message['content'] -%}\n"
    "      {%- if '</think>' in content -%}\n"
    "        {%- set content = content.split('</think>')[-1] -%}\n"
    "      {%- endif -%}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}\n"
    "    {%- endif -%}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'tool' -%}\n"
    "    {%- set ns.is_tool = true -%}\n"
    "    {%- if ns.is_output_first -%}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}\n"
    "      {%- set ns.is_output_first = false -%}\n"
    "      {%- else -%}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}\n"
    "    {%- endif -%}\n"
    "  {%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if ns.is_tool -%}{{'<｜tool▁outputs▁end｜>'}}\n"
    "{%- endif -%}\n"
    "{%- if add_generation_prompt and not ns.is_tool -%}{{'<｜Assistant｜><think>\\n'}}\n"
    "{%- endif %}\n";

/* GPT-2 bytes_to_unicode, in token order: printable Latin-1 bytes keep their code
 * point; the other 68 bytes map to U+0100.. in byte order. Token j of the byte
 * range stands for byte bytes[j]; its text is the UTF-8 of cps[j]. */
static bool vocab_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/* UTF-8 of code point cp (< 0x800) into out (3 bytes of room); returns its length. */
static size_t vocab_utf8(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

uint32_t vocab_builtin_n_tokens(void)
{
    return (uint32_t)VOCAB_N;
}

/* The byte-level token texts, in id order, into storage (3 bytes each). */
static void vocab_byte_tokens(char storage[VOCAB_BYTES][3], const char **strs, size_t *lens)
{
    size_t j = 0;
    for (unsigned b = 0; b < 256; b++)
        if (vocab_printable(b)) {
            lens[j] = vocab_utf8(b, storage[j]);
            strs[j] = storage[j];
            j++;
        }
    unsigned extra = 0;
    for (unsigned b = 0; b < 256; b++)
        if (!vocab_printable(b)) {
            lens[j] = vocab_utf8(256 + extra++, storage[j]);
            strs[j] = storage[j];
            j++;
        }
}

static int vocab_write_tokens(struct gguf_writer *w)
{
    char storage[VOCAB_BYTES][3];
    const char *strs[VOCAB_N];
    size_t lens[VOCAB_N];
    int32_t types[VOCAB_N];
    vocab_byte_tokens(storage, strs, lens);
    for (size_t j = 0; j < VOCAB_N; j++)
        types[j] = TYPE_NORMAL;
    for (size_t m = 0; m < VOCAB_N_MERGES; m++) {
        strs[VOCAB_BYTES + m] = vocab_merges[m][1];
        lens[VOCAB_BYTES + m] = strlen(vocab_merges[m][1]);
    }
    for (size_t s = 0; s < VOCAB_N_SPECIAL; s++) {
        strs[VOCAB_FIRST_SPECIAL + s] = vocab_special[s].text;
        lens[VOCAB_FIRST_SPECIAL + s] = strlen(vocab_special[s].text);
        types[VOCAB_FIRST_SPECIAL + s] = vocab_special[s].type;
    }
    int rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, VOCAB_N);
    if (rc == 0)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
                                 VOCAB_N);
    return rc;
}

static int vocab_write_merges(struct gguf_writer *w)
{
    const char *strs[VOCAB_N_MERGES];
    size_t lens[VOCAB_N_MERGES];
    for (size_t m = 0; m < VOCAB_N_MERGES; m++) {
        strs[m] = vocab_merges[m][0];
        lens[m] = strlen(vocab_merges[m][0]);
    }
    return gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", strs, lens, VOCAB_N_MERGES);
}

int vocab_builtin_write(struct gguf_writer *w, struct err *err)
{
    static const char model[] = "gpt2", pre[] = "deepseek-r1-qwen";
    int rc = gguf_writer_set_str(w, "tokenizer.ggml.model", model, strlen(model));
    if (rc == 0)
        rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, strlen(pre));
    if (rc == 0)
        rc = vocab_write_tokens(w);
    if (rc == 0)
        rc = vocab_write_merges(w);
    if (rc == 0)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", VOCAB_BOS);
    if (rc == 0)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", VOCAB_EOS);
    if (rc == 0)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", VOCAB_EOS);
    if (rc == 0)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (rc == 0)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (rc == 0)
        rc = gguf_writer_set_str(w, "tokenizer.chat_template", vocab_chat_template,
                                 sizeof vocab_chat_template - 1);
    if (rc != 0)
        return err_set(err, rc, "built-in vocabulary: cannot set tokenizer metadata");
    return 0;
}
