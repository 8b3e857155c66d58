# SPDX-License-Identifier: MIT
# bash completion for batonctl(8): commands, their options, and the names of
# the apps of the batond that -s/--socket (or $BATON_SOCKET) names, asked with
# `batonctl status`. Needs bash only (no bash-completion helpers).

# The apps of the running batond, one per line; nothing when none answers.
_batonctl_apps()
{
	local -a sock=("$@")
	"${COMP_WORDS[0]}" "${sock[@]}" --timeout 1 status 2>/dev/null |
		sed -n 's/^app \([A-Za-z0-9_.-]*\): .*/\1/p'
}

_batonctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local commands="status upgrade reload scale reexec metrics stop"
	local -a sock=()
	local cmd="" i word args=0
	COMPREPLY=()
	# The words before the cursor: batonctl's options, the command, its arguments.
	for ((i = 1; i < COMP_CWORD; i++)); do
		word=${COMP_WORDS[i]}
		case $word in
		-s | --socket)
			sock=(--socket "${COMP_WORDS[i + 1]}")
			((i++))
			;;
		--socket=*) sock=("$word") ;;
		-t | --timeout) ((i++)) ;;
		--binary) ((i++)) ;;
		-*) ;;
		*)
			if [[ -z $cmd ]]; then
				cmd=$word
			else
				((args++))
			fi
			;;
		esac
	done
	case $prev in
	-s | --socket | --binary)
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	-t | --timeout)
		return
		;;
	esac
	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "--socket --timeout --help --version" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
		fi
		return
	fi
	local opts="--help --timeout"
	case $cmd in
	status) opts+=" --json" ;;
	upgrade) opts+=" --wait-drain" ;;
	reexec) opts+=" --binary" ;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
		return
	fi
	# upgrade APP and scale APP N: the app names, as the first argument only.
	case $cmd in
	upgrade | scale)
		((args == 0)) && mapfile -t COMPREPLY < <(compgen -W "$(_batonctl_apps "${sock[@]}")" -- "$cur")
		;;
	esac
}
complete -F _batonctl batonctl
