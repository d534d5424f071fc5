# criterion_tests.cmake — included by ctest (TEST_INCLUDE_FILES) for one Criterion binary:
# lists its tests with `--list` when ctest starts, so the entries are exactly the tests
# compiled in (#if'ed tests included or not), and registers one entry per test,
# BINARY.TEST, run with --filter SUITE/TEST. Inputs: IBEX_CT_BIN, IBEX_CT_NAME,
# IBEX_CT_LABELS, IBEX_CT_TIMEOUT. A binary that is missing or cannot list its tests is one
# failing entry that says so, never a silently shorter suite.
if(NOT EXISTS "${IBEX_CT_BIN}")
  add_test("${IBEX_CT_NAME}.NOT_BUILT" sh -c "echo '${IBEX_CT_BIN} is not built: run cmake --build first'; exit 1")
  return()
endif()
execute_process(COMMAND "${IBEX_CT_BIN}" --list --color=never OUTPUT_VARIABLE _out ERROR_VARIABLE _err
  RESULT_VARIABLE _rc TIMEOUT 60)
string(REPLACE "\n" ";" _lines "${_out}")
set(_suite "")
set(_n 0)
foreach(_line IN LISTS _lines)
  if(_line MATCHES "^([A-Za-z0-9_]+): [0-9]+ tests?$")
    set(_suite "${CMAKE_MATCH_1}")
  elseif(_suite AND _line MATCHES " ([A-Za-z0-9_]+)$")
    set(_test "${CMAKE_MATCH_1}")
    set(_name "${IBEX_CT_NAME}.${_test}")
    # -j1: Criterion forks a process per test; two cores are shared with ctest's own -j.
    # --verbose prints "[SKIP] suite::test: reason" for a cr_skip, which marks the entry
    # skipped (under --filter the other tests print "...: Test is disabled"); a filter
    # that ran nothing ("Tested: 0" without that line) fails.
    add_test("${_name}" "${IBEX_CT_BIN}" --jobs 1 --color=never --verbose --filter "${_suite}/${_test}")
    set_tests_properties("${_name}" PROPERTIES TIMEOUT "${IBEX_CT_TIMEOUT}" LABELS "${IBEX_CT_LABELS}"
      SKIP_REGULAR_EXPRESSION "\\[SKIP\\] ${_suite}::${_test}: " FAIL_REGULAR_EXPRESSION "Tested: 0 ")
    math(EXPR _n "${_n} + 1")
  endif()
endforeach()
if(NOT _rc EQUAL 0 OR _n EQUAL 0)
  add_test("${IBEX_CT_NAME}.LIST_FAILED" sh -c "echo '${IBEX_CT_BIN} --list failed (exit ${_rc}) or listed no tests'; exit 1")
endif()
