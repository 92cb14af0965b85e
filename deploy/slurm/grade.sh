#!/usr/bin/env bash
# Grade the class on a Slurm cluster: one student first (fills the solutions' cache), then N shards as a
# job array, then the merge.  Usage: bash deploy/slurm/grade.sh COURSE_DIR N [ONE_STUDENT_ID]
set -euo pipefail
COURSE="${1:?usage: grade.sh COURSE_DIR N [ONE_STUDENT_ID]}"
N="${2:?number of shards}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ONE="${3:-$(ls "$COURSE/submitted" | head -n 1)}"
warm=$(sbatch --parsable --job-name=grade-warm --cpus-per-task=2 --mem=16G --time=02:00:00 \
       --chdir="$COURSE" --wrap=".venv/bin/python -m course_instructor.grading autograde --submissions submitted --student '$ONE' --jobs 1 --no-feedback")
shards=$(sbatch --parsable --dependency=afterany:"$warm" --array=1-"$N" --export=ALL,N="$N",COURSE="$COURSE" \
         "$HERE/shard.sbatch")
sbatch --dependency=afterany:"$shards" --export=ALL,COURSE="$COURSE" "$HERE/merge.sbatch"
echo "submitted: warm-up $warm, shards $shards (1-$N), merge after them"
