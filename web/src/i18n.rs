//! Every label in English and Chinese (中文).

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }
    pub fn parse(s: &str) -> Lang {
        if s.starts_with("zh") {
            Lang::Zh
        } else {
            Lang::En
        }
    }
}

/// The label for `key` in `lang`.
pub fn t(lang: Lang, key: &str) -> &'static str {
    let (en, zh) = match key {
        "title" => (
            "hubscope — look inside, size up and run open LLMs",
            "hubscope — 查看、估算并运行开源大模型",
        ),
        "tab.model" => ("Model", "模型"),
        "dtype.auto" => ("auto (what fits)", "自动（按能装下的选）"),
        "dtype.stored" => (
            "stored (weights as the file holds them, f32 compute; CPU)",
            "按文件存储（权重保持文件中的格式，f32 计算；CPU）",
        ),
        "kv.full" => ("Layers attending to every token", "关注全部 token 的层"),
        "kv.window" => (
            "Layers within a sliding window (their cache holds at most the window)",
            "滑动窗口层（其缓存最多保存窗口长度）",
        ),
        "kv.latent" => (
            "Latent attention (MLA): values per token and layer, cached compressed → decompressed as transformers caches them",
            "潜在注意力（MLA）：每层每 token 的值，压缩缓存 → transformers 的解压缓存",
        ),
        "kv.recurrent" => (
            "Recurrent layers with a fixed state (counted in the KV column)",
            "具有固定状态的循环层（计入 KV 列）",
        ),
        "kv.state_unknown" => (
            "state size not stated in a form hubscope reads; not counted",
            "配置未以 hubscope 可读的形式给出状态大小；未计入",
        ),
        "kv.unknown" => ("KV cache not planned", "未估算 KV 缓存"),
        "moe.active" => (
            "Mixture of experts: parameters active per token",
            "混合专家：每个 token 激活的参数",
        ),
        "mem.headers_only" => (
            "From the headers alone: fine-tuning activations (≈) are estimated from config.json's sizes; inference activations are planned for the families hubscope runs.",
            "仅依据文件头：微调激活（≈）按 config.json 中的尺寸估算；推理激活只对 hubscope 能运行的模型族估算。",
        ),
        "st.unknown" => (
            "a family hubscope does not run; the tree is built from the tensor names",
            "hubscope 尚不能运行的模型族；结构树由张量名构建",
        ),
        "st.quantized" => (
            "quantized; the tree is built from the tensor names",
            "已量化；结构树由张量名构建",
        ),
        "st.gguf" => (
            "GGUF; the tree is built from the tensor names in its header",
            "GGUF；结构树由文件头中的张量名构建",
        ),
        "gguf_file" => (
            "GGUF file (where the repo holds several)",
            "GGUF 文件（仓库中有多个时）",
        ),
        "tab.structure" => ("Structure", "结构"),
        "tab.memory" => ("Memory", "显存"),
        "tab.generate" => ("Generate", "生成"),
        "tab.finetune" => ("Fine-tune", "微调"),
        "ft.intro" => (
            "LoRA fine-tuning in this tab (f32, burn autodiff on the device above): only the adapter is trained; the result is a PEFT adapter folder.",
            "在此页面中进行 LoRA 微调（f32，在上方所选设备上用 burn 自动求导）：只训练适配器；结果是 PEFT 格式的适配器文件夹。",
        ),
        "ft.data" => (
            "Training data (JSON lines: conversations or alpaca)",
            "训练数据（JSON Lines：对话格式或 alpaca 格式）",
        ),
        "ft.upload" => ("or upload a .jsonl file", "或上传 .jsonl 文件"),
        "ft.init" => (
            "Start from an adapter repo (optional)",
            "从已有适配器仓库开始（可选）",
        ),
        "ft.init_sub" => ("its subfolder", "子目录"),
        "ft.from_adapter" => (
            "taken from the starting adapter's adapter_config.json",
            "取自起始适配器的 adapter_config.json",
        ),
        "ft.rank" => ("LoRA rank r", "LoRA 秩 r"),
        "ft.alpha" => ("LoRA alpha", "LoRA alpha"),
        "ft.dropout" => ("LoRA dropout", "LoRA dropout"),
        "ft.seed" => ("Seed", "随机种子"),
        "ft.targets" => (
            "Target layers (blank: every projection of the model's family)",
            "目标层（留空：该模型家族的全部投影层）",
        ),
        "ft.epochs" => ("Epochs", "轮数"),
        "ft.batch" => ("Batch size", "批大小"),
        "ft.lr" => ("Learning rate (AdamW)", "学习率（AdamW）"),
        "ft.wd" => ("Weight decay", "权重衰减"),
        "ft.ckpt" => (
            "Gradient checkpointing (recompute each layer in the backward pass: less memory, about a third more compute)",
            "梯度检查点（反向传播时逐层重算：更省内存，计算量约多三分之一）",
        ),
        "ft.train" => ("Train", "开始训练"),
        "ft.trainable" => ("Trainable parameters", "可训练参数"),
        "ft.planned" => ("Planned memory", "预计内存"),
        "ft.losses" => ("Loss per step", "每步损失"),
        "ft.adapter" => ("Adapter (PEFT format)", "适配器（PEFT 格式）"),
        "ft.chat" => ("Chat with the trained model", "与训练后的模型对话"),
        "ft.train_first" => ("Train an adapter first.", "请先训练一个适配器。"),
        "repo" => ("Repo id", "仓库 ID"),
        "revision" => ("Revision", "版本"),
        "endpoint" => ("Endpoint (Hub or mirror)", "服务地址（Hub 或镜像）"),
        "token" => (
            "Access token (gated repos; kept in memory, sent only to the endpoint)",
            "访问令牌（受限仓库；只保存在内存中，只发送给该地址）",
        ),
        "load" => ("Load", "加载"),
        "loading" => ("Loading…", "加载中…"),
        "device" => ("Device", "设备"),
        "device.auto" => ("auto", "自动"),
        "params" => ("parameters", "参数"),
        "total_params" => ("Total parameters", "参数总数"),
        "bytes" => ("Stored weights", "权重大小"),
        "fetched" => ("Fetched (headers only)", "已获取（仅文件头）"),
        "inference" => ("Inference", "推理"),
        "finetune" => ("Fine-tuning", "微调"),
        "weights" => ("weights", "权重"),
        "kv" => ("KV cache", "KV 缓存"),
        "acts" => ("activations", "激活"),
        "total" => ("total", "合计"),
        "thumb" => ("rule of thumb", "经验估算"),
        "context" => ("Context (tokens)", "上下文长度"),
        "gpu_size" => ("GPU memory", "显卡显存"),
        "fits" => ("fits", "可以放下"),
        "no_fit" => ("does not fit", "放不下"),
        "limits" => ("This browser's WebGPU adapter", "此浏览器的 WebGPU 适配器"),
        "no_webgpu" => (
            "No WebGPU adapter: the CPU (WebAssembly) is used",
            "没有 WebGPU 适配器：使用 CPU（WebAssembly）",
        ),
        "big_tensors" => (
            "Tensors over WebGPU's default limits",
            "超过 WebGPU 默认限制的张量",
        ),
        "none_big" => (
            "Every tensor fits WebGPU's default 128 MiB binding.",
            "所有张量都在 WebGPU 默认的 128 MiB 限制内。",
        ),
        "prompt" => ("Prompt", "提示词"),
        "chat" => ("Chat template", "对话模板"),
        "system" => ("System message", "系统消息"),
        "temperature" => ("Temperature (0 = greedy)", "温度（0 = 贪心）"),
        "top_k" => ("Top-k", "Top-k"),
        "top_p" => ("Top-p", "Top-p"),
        "max_new" => ("Max new tokens", "最多生成 token 数"),
        "run_on" => ("Run on", "运行位置"),
        "run_on.page" => ("this page", "本页面"),
        "run_on.server" => (
            "a server (OpenAI API, e.g. hubscope serve --chat)",
            "服务器（OpenAI 接口，如 hubscope serve --chat）",
        ),
        "server_url" => ("Server URL", "服务器地址"),
        "api_key" => ("API key (not saved in the link)", "API 密钥（不写入链接）"),
        "run" => ("Generate", "生成"),
        "stop" => ("Stop", "停止"),
        "download" => ("Weights", "权重下载"),
        "from_cache" => ("from the browser cache", "来自浏览器缓存"),
        "cache.not_kept" => (
            "The weights ran but the browser's cache did not keep them, so the next visit downloads them again: free space (clear this site's data in the browser settings) or pick a smaller dtype",
            "权重已运行，但浏览器缓存未能保存，下次访问会重新下载：请释放空间（在浏览器设置中清除本站数据）或选择更小的数据类型",
        ),
        "tok_s" => ("tokens/s", "token/秒"),
        "prefill" => ("prompt", "提示词"),
        "first_token" => ("first token after", "首个 token 用时"),
        "output" => ("Output", "输出"),
        "dtype" => ("Weights / compute dtype", "权重 / 计算精度"),
        "lang" => ("中文", "English"),
        "err.404" => (
            "Not found: check the repo id and revision (mirrors need the right endpoint).",
            "未找到：请检查仓库 ID 和版本（镜像需要正确的服务地址）。",
        ),
        "err.401" => (
            "This repo is gated or private: accept its terms on the Hub and enter a token.",
            "该仓库受限或私有：请在 Hub 上同意条款并填写访问令牌。",
        ),
        "err.network" => (
            "Network error: the server went away or is unreachable. Try again.",
            "网络错误：服务器断开或无法访问，请重试。",
        ),
        "err.arch" => ("Unsupported architecture", "不支持的模型架构"),
        "err.too_big" => ("Too large for this device", "对此设备来说太大"),
        "err.oom" => (
            "Out of memory: the tab could not get more memory for the model. Try a smaller dtype (f16), a smaller model, WebGPU, or close other tabs; the page is still usable",
            "内存不足：此页面无法再为模型分配内存。请尝试更小的数据类型（f16）、更小的模型、WebGPU，或关闭其他标签页；页面仍可继续使用",
        ),
        "err.device_lost" => (
            "The WebGPU device was lost (a driver reset or GPU crash). Run again to start on a new device, or choose the CPU",
            "WebGPU 设备已丢失（驱动重置或 GPU 崩溃）。请重新运行以使用新设备，或选择 CPU",
        ),
        "err.no_webgpu" => (
            "This browser gave the page no WebGPU adapter: choose the CPU device (or Auto)",
            "此浏览器没有为页面提供 WebGPU 适配器：请选择 CPU 设备（或“自动”）",
        ),
        "err.gpu" => (
            "WebGPU error (a shader or pipeline the device refused). Try f32, or choose the CPU",
            "WebGPU 错误（设备拒绝了着色器或管线）。请尝试 f32，或选择 CPU",
        ),
        "err.crashed" => (
            "The model worker stopped. Run again; if it happens again, try the CPU or a smaller dtype",
            "模型工作线程已停止。请重新运行；若再次发生，请尝试 CPU 或更小的数据类型",
        ),
        "phase.opening" => ("reading the repo", "读取仓库"),
        "phase.loading" => ("loading weights", "加载权重"),
        "phase.network" => ("network", "网络"),
        "phase.cache" => ("browser cache", "浏览器缓存"),
        "phase.tensors" => ("tensors placed", "张量已就位"),
        "phase.prefill" => (
            "reading the prompt (the first run on WebGPU also compiles its kernels)",
            "读取提示词（WebGPU 首次运行时还要编译内核）",
        ),
        "phase.generating" => ("generating", "生成中"),
        "phase.training" => ("training", "训练中"),
        "done" => ("done", "完成"),
        "stopped" => ("stopped", "已停止"),
        _ => ("?", "?"),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}
