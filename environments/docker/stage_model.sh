#!/usr/bin/env bash
# Stage an exported model in the edge module's build context, where Dockerfile.<platform> copies
# it from: environments/docker/model/{model_int8.tflite,labels.txt,model.json,thresholds.json}.
#
#   environments/docker/stage_model.sh <export folder>
#
# <export folder> is what `ppe export --out` wrote (the edge deployment pipeline passes its export;
# locally, for example, outputs/runs/<id>/export). The staging folder is emptied first, so a model
# from an earlier build can never end up in the image. Files get mode 0644; the Dockerfile makes
# them read-only inside the image.
set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 <folder written by 'ppe export'>" >&2
  exit 2
fi
export_dir="$1"
model_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/model"
files=(model_int8.tflite labels.txt model.json thresholds.json)

# thresholds.json holds the per-class score thresholds `ppe train` chooses on the val split; the
# Dockerfiles COPY it, so an export without it stops here with the way to make it, not in the build.
for name in "${files[@]}"; do
  if [ -s "${export_dir}/${name}" ]; then
    continue
  fi
  if [ "${name}" = thresholds.json ]; then
    echo "error: ${export_dir}/thresholds.json is missing or empty: the exported model folder has" \
      "no per-class thresholds (trained without a val split, or before ppe train wrote them);" \
      "run 'ppe thresholds --model <model folder> --data <dataset>' and export it again" >&2
  else
    echo "error: ${export_dir}/${name} is missing or empty; export the model with" \
      "'ppe export' (int8 enabled, the default) and pass its --out folder" >&2
  fi
  exit 1
done

rm -rf "${model_dir}"
mkdir -p "${model_dir}"
for name in "${files[@]}"; do
  install -m 0644 "${export_dir}/${name}" "${model_dir}/${name}"
done
echo "staged ${files[*]} from ${export_dir} into ${model_dir}"
