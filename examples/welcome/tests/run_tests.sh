#!/bin/sh
# The rule must wire hello.arrived to hello.greet.
passed=0; failed=0
grep -q "trigger_ref: hello.arrived" rules/greet_arrivals.yaml && passed=$((passed+1)) || failed=$((failed+1))
grep -q "action_ref: hello.greet" rules/greet_arrivals.yaml && passed=$((passed+1)) || failed=$((failed+1))
echo "Total Tests: 2"
echo "Passed: $passed"
echo "Failed: $failed"
