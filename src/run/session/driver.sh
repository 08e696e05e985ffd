# codeexec session driver for Bash (and the shell of compiled languages' sessions): each
# cell is eval'd in this shell, so variables, functions and the working directory persist.
# Protocol as in driver.py; the result line carries the cell's exit status.
exec 3<&0 0</dev/null
while LC_ALL=C IFS=' ' read -r -u 3 __ce_nonce __ce_timeout __ce_len; do
  LC_ALL=C read -r -d '' -N "$__ce_len" -u 3 __ce_code
  eval "$__ce_code"
  __ce_rc=$?
  printf '\036%s{"status":"%s","exit_code":%d,"value":null,"error":null,"display":[]}\n' \
    "$__ce_nonce" "$([ "$__ce_rc" -eq 0 ] && echo ok || echo error)" "$__ce_rc"
done
