# Installs awith from BUILD_DIR into a fresh prefix under WORK_DIR, configures and builds the
# consumer project against it with find_package(awith CONFIG REQUIRED), then runs the consumer.
# Invoked by CTest as: cmake -DBUILD_DIR=... -DWORK_DIR=... -DCONSUMER_DIR=... [-DCXX=...]
#                            [-DCXX_FLAGS=...] [-DLINK_FLAGS=...] -P run_install_test.cmake
foreach(var BUILD_DIR WORK_DIR CONSUMER_DIR CXX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_install_test.cmake: ${var} is not set")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${what} failed (${rc})\n${out}\n${err}")
  endif()
  message(STATUS "install test: ${what}: ok")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

step("cmake --install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
if(NOT EXISTS "${prefix}/include/awith/awith.hpp")
  message(FATAL_ERROR "install test: headers missing under ${prefix}/include/awith")
endif()
step("configure consumer" ${CMAKE_COMMAND} -S "${CONSUMER_DIR}" -B "${consumer_build}"
     "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_COMPILER=${CXX}"
     "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}"
     "-DCMAKE_BUILD_TYPE=Release")
step("build consumer" ${CMAKE_COMMAND} --build "${consumer_build}")
step("run consumer" "${consumer_build}/app")
message(STATUS "${last_output}")
if(NOT last_output MATCHES "consumer: 42")
  message(FATAL_ERROR "install test: unexpected consumer output: ${last_output}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
