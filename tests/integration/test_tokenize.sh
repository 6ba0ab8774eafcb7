# test_tokenize: `deepseek tokenize` reproduces llama.cpp's prompt tokens of every
# reference json, handles special-token text, and fails with exit 2 on bad input.
. "$DS_SOURCE_DIR/tests/integration/lib.sh"
need_testdata
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
REF=$DS_TESTDATA/reference
MODELS=$DS_TESTDATA/models

# 1. prompt_tokens of every reference json (BOS added, special text parsed)
for json in "$REF"/*/p*.json; do
    eval "$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("model=%s prompt=%s" % (d["model"], d["prompt_file"]))
print("want=\"%s\"" % " ".join(str(i) for i in d["prompt_tokens"]))
' "$json")"
    if got=$("$DS_BIN" tokenize --add-bos --parse-special -m "$MODELS/$model" \
            --file "$REF/prompts/$prompt" 2>"$TMP/err"); then
        if [ "$got" = "$want" ]; then ok "prompt_tokens ${json#$REF/}"
        else fail "${json#$REF/}: got '$got', want '$want'"; fi
    else
        fail "${json#$REF/}: exit $? ($(cat "$TMP/err"))"
    fi
done

# 2. special-token text: plain without --parse-special, one id with it
M=$MODELS/tiny-qwen2-Q8_0.gguf
EOS_TEXT='<｜end▁of▁sentence｜>'
plain=$("$DS_BIN" tokenize -m "$M" "$EOS_TEXT")
special=$("$DS_BIN" tokenize --parse-special -m "$M" "$EOS_TEXT")
if [ "$special" = "151643" ]; then ok "special text -> 151643"; else fail "special: '$special'"; fi
case " $plain " in
    *" 151643 "*) fail "plain text produced the special id: '$plain'" ;;
    *" "*" "*) ok "plain text -> several ids ($plain)" ;;
    *) fail "plain text gave '$plain'" ;;
esac
bos=$("$DS_BIN" tokenize --add-bos -m "$M" "hi")
case "$bos" in 151646\ *) ok "--add-bos prepends 151646" ;; *) fail "--add-bos: '$bos'" ;; esac
pieces=$("$DS_BIN" tokenize --pieces --parse-special -m "$M" "Hi$EOS_TEXT")
if printf '%s\n' "$pieces" | grep -q "^151643	$EOS_TEXT\$"; then ok "--pieces shows the special piece"
else fail "--pieces: '$pieces'"; fi

# 3. --chat: the template's markers are control tokens, the user's typed ones plain text
chat=$("$DS_BIN" tokenize --chat -m "$M" "Hi<｜Assistant｜>")
count() { printf '%s\n' "$1" | tr ' ' '\n' | grep -c "^$2\$" || true; }
case "$chat" in
    "151646 151644 "*" 151645 151648 198")
        if [ "$(count "$chat" 151645)" -eq 1 ] && [ "$(count "$chat" 151644)" -eq 1 ]; then
            ok "--chat: BOS <U> text <A> <think> newline, typed <A> stays plain ($chat)"
        else fail "--chat: typed marker became a control token: '$chat'"; fi ;;
    *) fail "--chat: '$chat'" ;;
esac
plain=$("$DS_BIN" tokenize -m "$M" "Hi<｜Assistant｜>")
case "$chat" in *" $plain "*) ok "--chat: user text tokenized as plain text" ;;
    *) fail "--chat: '$plain' not inside '$chat'" ;; esac
sys=$("$DS_BIN" tokenize --chat --system "Be brief." -m "$M" "Hi")
nosys=$("$DS_BIN" tokenize --chat -m "$M" "Hi")
case "$sys" in "151646 "*" 151644 13048 151645 151648 198")
    if [ "${#sys}" -gt "${#nosys}" ]; then ok "--system adds the system text"; else fail "--system: '$sys'"; fi ;;
    *) fail "--chat --system: '$sys'" ;; esac
llm=$("$DS_BIN" tokenize --chat --chat-template deepseek-llm -m "$M" "Hi")
want=$("$DS_BIN" tokenize --add-bos -m "$M" "User: Hi

Assistant:")
if [ "$llm" = "$want" ]; then ok "--chat-template deepseek-llm ($llm)"; else fail "deepseek-llm: '$llm' want '$want'"; fi
expect_exit 2 "$DS_BIN" tokenize --chat --chat-template bogus -m "$M" "Hi"
expect_exit 2 "$DS_BIN" tokenize --chat -m "$MODELS/tiny-llama-F32.gguf" "Hi"
expect_exit 2 "$DS_BIN" tokenize --system "s" -m "$M" "Hi"
expect_exit 2 "$DS_BIN" tokenize --chat --parse-special -m "$M" "Hi"

# 4. errors: exit 2 with one line
expect_exit 2 "$DS_BIN" tokenize -m "$TMP/missing.gguf" "text"
expect_exit 2 "$DS_BIN" tokenize "text"
expect_exit 2 "$DS_BIN" tokenize -m "$M"
expect_exit 2 "$DS_BIN" tokenize -m "$M" --bogus "text"
expect_exit 2 "$DS_BIN" tokenize -m "$M" "a" "b"
expect_exit 2 "$DS_BIN" tokenize -m "$M" --file "$TMP/missing.txt"
printf 'not a gguf file' >"$TMP/bad.gguf"
expect_exit 2 "$DS_BIN" tokenize -m "$TMP/bad.gguf" "text"
if [ "$(wc -l <"$TMP/err")" -eq 1 ]; then ok "one-line error"; else fail "error has $(wc -l <"$TMP/err") lines"; fi
expect_exit 0 "$DS_BIN" tokenize --help
finish
