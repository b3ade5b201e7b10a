#!/bin/sh
# One of two tests fails: 7/0 should be refused with a message, and is not.
passed=0; failed=0
if [ "$(sh actions/divide.sh 6 3)" = 2 ]; then passed=$((passed+1)); else failed=$((failed+1)); fi
if sh actions/divide.sh 7 0 2>/dev/null | grep -q "cannot divide by zero"; then
  passed=$((passed+1))
else
  failed=$((failed+1)); echo "FAIL: division by zero is not refused"
fi
echo "Total Tests: 2"
echo "Passed: $passed"
echo "Failed: $failed"
[ "$failed" -eq 0 ]
