#!/bin/sh
# Attune's simple result format: the executor reads the summary lines.
total=0; passed=0; failed=0
check() {
  total=$((total + 1))
  if [ "$1" = "$2" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: '$1' != '$2'"; fi
}
check "$(sh actions/greet.sh)" "Hello, world!"
check "$(sh actions/greet.sh Ada)" "Hello, Ada!"
check "$(GREETING=Hi sh actions/greet.sh Bob)" "Hi, Bob!"
echo "Total Tests: $total"
echo "Passed: $passed"
echo "Failed: $failed"
[ "$failed" -eq 0 ]
