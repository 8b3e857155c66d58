# SPDX-License-Identifier: MIT
# Run by `cmake --install` (install(SCRIPT) in the top CMakeLists.txt, which sets
# baton_conf_dir, baton_conf_src and baton_build_dir first). Installs batond.conf
# unless one is there: an administrator's configuration is never replaced. The file
# stays out of install_manifest.txt; install_configs.txt records it with the checksum
# of what this version ships, and `make uninstall` removes it only while it is unedited.
set(dest "$ENV{DESTDIR}${baton_conf_dir}/batond.conf")
if(EXISTS "${dest}")
  message(STATUS "Kept: ${dest} (an existing configuration is never replaced; "
		 "every option is in batond.conf.example beside it)")
else()
  file(COPY "${baton_conf_src}" DESTINATION "$ENV{DESTDIR}${baton_conf_dir}"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  message(STATUS "Installing: ${dest}")
  set(installed TRUE)
endif()
file(SHA256 "${baton_conf_src}" shipped)
# Without DESTDIR, as in install_manifest.txt.
file(WRITE "${baton_build_dir}/install_configs.txt" "${shipped}  ${baton_conf_dir}/batond.conf\n")

# The configuration installed gives the control socket to group baton.
if(installed AND "$ENV{DESTDIR}" STREQUAL "")
  execute_process(COMMAND getent group baton RESULT_VARIABLE no_group
		  OUTPUT_QUIET ERROR_QUIET)
  if(no_group)
    message(STATUS "Note: ${dest} gives the control socket to group baton, which does not "
		   "exist: create it with `groupadd --system baton` before starting batond")
  endif()
endif()
