-- Conversations and runs: every chat turn is a run inside a conversation.
-- Idempotent. Every chat write and read is a SQL function below, called by both
-- backends (`select fn(...)` on Postgres, `rpc()` on Supabase), so the logic is
-- written once. Functions take and return jsonb-friendly values.

create table if not exists public.conversations (
    id uuid primary key default gen_random_uuid(),
    user_id bigint not null references public.users (id) on delete cascade,
    title text,
    title_by_user boolean not null default false,
    is_default boolean not null default false,
    created_at timestamptz not null default clock_timestamp(),
    updated_at timestamptz not null default clock_timestamp()
);
create unique index if not exists conversations_default_idx
    on public.conversations (user_id) where is_default;
create index if not exists conversations_user_updated_idx
    on public.conversations (user_id, updated_at desc, id desc);

create table if not exists public.runs (
    id uuid primary key default gen_random_uuid(),
    seq bigint generated always as identity,
    conversation_id uuid not null references public.conversations (id) on delete cascade,
    user_id bigint not null references public.users (id) on delete cascade,
    status text not null default 'pending'
        check (status in ('pending', 'running', 'succeeded', 'failed', 'stopped', 'timed_out')),
    application text,
    model text,
    input_tokens integer,
    output_tokens integer,
    error text,
    owner text,                 -- host:pid of the process serving the run
    stop_requested boolean not null default false,
    deadline_at timestamptz,
    created_at timestamptz not null default clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz
);
create index if not exists runs_conversation_active_idx
    on public.runs (conversation_id, seq) where status in ('pending', 'running');
create index if not exists runs_active_idx
    on public.runs (owner) where status in ('pending', 'running');

alter table public.chat_messages add column if not exists conversation_id uuid
    references public.conversations (id) on delete cascade;
alter table public.chat_messages add column if not exists run_id uuid
    references public.runs (id) on delete set null;
alter table public.chat_messages add column if not exists tool_call jsonb;
alter table public.chat_messages add column if not exists sources jsonb;
create index if not exists chat_messages_conversation_idx
    on public.chat_messages (conversation_id, id);

alter table public.qa add column if not exists run_id uuid
    references public.runs (id) on delete set null;
alter table public.qa add column if not exists message_id bigint
    references public.chat_messages (id) on delete set null;

alter table public.conversations enable row level security;
alter table public.runs enable row level security;

-- Users of an older schema: one default conversation each, holding their messages.
insert into public.conversations (user_id, is_default, created_at, updated_at)
select u.id, true, u.created_at, coalesce(max(m.created_at), u.created_at)
from public.users u
left join public.chat_messages m on m.user_id = u.id
where not exists (select 1 from public.conversations c where c.user_id = u.id and c.is_default)
group by u.id, u.created_at;
update public.chat_messages m set conversation_id = c.id
from public.conversations c
where m.conversation_id is null and c.user_id = m.user_id and c.is_default;

-- The per-user writes of the first schema, replaced by the run functions below.
drop function if exists public.jelly_get_or_create_user(text, text);
drop function if exists public.jelly_add_answer(bigint, text, text, text, jsonb, text[]);

-- ---------------------------------------------------------------- helpers

-- The user of a token, created (with a default conversation holding the greeting)
-- when new; no write when it exists (the common case). Concurrent first contacts
-- with one token create one user.
create or replace function public.jelly_user(p_token text, p_greeting text)
returns table (user_id bigint, created boolean, default_conversation uuid)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
    v_id bigint;
    v_conv uuid;
    v_created boolean := false;
begin
    select u.id, c.id into v_id, v_conv from public.users u
    left join public.conversations c on c.user_id = u.id and c.is_default
    where u.token = p_token;
    if v_conv is not null then
        return query select v_id, false, v_conv;
        return;
    end if;
    if v_id is null then
        insert into public.users (token) values (p_token)
        on conflict (token) do nothing
        returning id into v_id;
        if v_id is null then
            select u.id into v_id from public.users u where u.token = p_token;
        else
            v_created := true;
        end if;
    end if;
    select c.id into v_conv from public.conversations c where c.user_id = v_id and c.is_default;
    if v_conv is null then
        insert into public.conversations (user_id, is_default) values (v_id, true)
        on conflict do nothing
        returning id into v_conv;
        if v_conv is null then
            select c.id into v_conv from public.conversations c
            where c.user_id = v_id and c.is_default;
        elsif v_created then
            insert into public.chat_messages (user_id, conversation_id, type, content)
            values (v_id, v_conv, 'jelly', p_greeting);
        end if;
    end if;
    return query select v_id, v_created, v_conv;
end;
$$;

-- A conversation as clients see it (without its messages).
create or replace function public.jelly_conversation_json(p_id uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'id', c.id,
        'title', c.title,
        'created', c.created_at,
        'updated', c.updated_at,
        'message_count', (select count(*) from public.chat_messages m
                          where m.conversation_id = c.id and m.type in ('human', 'jelly')),
        'preview', (select left(m.content, 120) from public.chat_messages m
                    where m.conversation_id = c.id and m.type in ('human', 'jelly')
                    order by m.id desc limit 1)
    )
    from public.conversations c where c.id = p_id
$$;

-- ---------------------------------------------------------------- runs

-- Create a run (status pending) in a conversation of the token's user.
-- p_multitask: 'enqueue' (wait behind the active run), 'reject' (error JL409
-- naming the active run) or 'interrupt' (ask the active runs to stop, then wait).
-- The conversation row is locked so that concurrent submissions queue in order,
-- across processes.
create or replace function public.jelly_create_run(
    p_token text,
    p_greeting text,
    p_conversation_id uuid default null,
    p_application text default null,
    p_multitask text default 'enqueue',
    p_owner text default null,
    p_model text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_user record;
    v_conv uuid;
    v_active uuid;
    v_run uuid;
begin
    select * into v_user from public.jelly_user(p_token, p_greeting);
    if p_conversation_id is null then
        v_conv := v_user.default_conversation;
    else
        select c.id into v_conv from public.conversations c
        where c.id = p_conversation_id and c.user_id = v_user.user_id;
        if v_conv is null then
            raise exception 'conversation not found' using errcode = 'JL404';
        end if;
    end if;
    perform 1 from public.conversations c where c.id = v_conv for update;
    select r.id into v_active from public.runs r
    where r.conversation_id = v_conv and r.status in ('pending', 'running')
    order by r.seq limit 1;
    if v_active is not null then
        if p_multitask = 'reject' then
            raise exception 'the conversation has a running run %', v_active
                using errcode = 'JL409', detail = v_active::text;
        elsif p_multitask = 'interrupt' then
            update public.runs set stop_requested = true
            where conversation_id = v_conv and status in ('pending', 'running');
        end if;
    end if;
    insert into public.runs (conversation_id, user_id, application, owner, model)
    values (v_conv, v_user.user_id, p_application, p_owner, p_model)
    returning id into v_run;
    return jsonb_build_object(
        'run_id', v_run, 'conversation_id', v_conv, 'user_id', v_user.user_id,
        'user_created', v_user.created, 'queued', v_active is not null);
end;
$$;

-- Start a pending run once no earlier run of its conversation is active: store
-- the human message and return it with the conversation's memory. Returns
-- {"ready": false} while it must wait, {"ready": false, "stop": true} if it was
-- asked to stop while waiting.
create or replace function public.jelly_begin_run(
    p_run_id uuid,
    p_message text,
    p_memory integer default 10,
    p_timeout double precision default 120
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_run public.runs;
    v_message bigint;
    v_memory jsonb;
begin
    select * into v_run from public.runs r where r.id = p_run_id;
    if v_run.id is null then
        raise exception 'run not found' using errcode = 'JL404';
    end if;
    if v_run.status <> 'pending' then
        return jsonb_build_object('ready', false, 'stop', true, 'status', v_run.status);
    end if;
    if v_run.stop_requested then
        return jsonb_build_object('ready', false, 'stop', true, 'status', v_run.status);
    end if;
    perform 1 from public.conversations c where c.id = v_run.conversation_id for update;
    if exists (select 1 from public.runs r
               where r.conversation_id = v_run.conversation_id and r.seq < v_run.seq
                 and r.status in ('pending', 'running')) then
        return jsonb_build_object('ready', false);
    end if;
    select coalesce(jsonb_agg(jsonb_build_object('type', t.type, 'content', t.content)
                              order by t.id), '[]'::jsonb)
    into v_memory
    from (select m.id, m.type, m.content from public.chat_messages m
          where m.conversation_id = v_run.conversation_id and m.type in ('human', 'jelly')
          order by m.id desc limit greatest(p_memory, 0)) t;
    update public.runs set status = 'running', started_at = clock_timestamp(),
        deadline_at = clock_timestamp() + make_interval(secs => p_timeout)
    where id = p_run_id;
    insert into public.chat_messages (user_id, conversation_id, run_id, type, content, application)
    values (v_run.user_id, v_run.conversation_id, p_run_id, 'human', p_message, v_run.application)
    returning id into v_message;
    update public.conversations set updated_at = clock_timestamp() where id = v_run.conversation_id;
    return jsonb_build_object('ready', true, 'message_id', v_message, 'memory', v_memory,
        'titled', exists (select 1 from public.conversations c
                          where c.id = v_run.conversation_id
                            and (c.title is not null or c.title_by_user)));
end;
$$;

-- End a run: its tool rows, the answer (when the run got as far as a question),
-- the Q&A pair, the run's status and usage, and a first title for the
-- conversation. Idempotent: a run that already ended is left as it is.
-- p_tool_calls: [{"sentence", "call_id", "tool", "args", "result", "status", "duration_ms"}]
create or replace function public.jelly_finish_run(
    p_run_id uuid,
    p_status text,
    p_question text default null,
    p_answer text default null,
    p_sources jsonb default '[]'::jsonb,
    p_tool_calls jsonb default '[]'::jsonb,
    p_input_tokens integer default null,
    p_output_tokens integer default null,
    p_error text default null,
    p_title text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_run public.runs;
    v_message bigint;
begin
    select * into v_run from public.runs r where r.id = p_run_id for update;
    if v_run.id is null then
        raise exception 'run not found' using errcode = 'JL404';
    end if;
    if v_run.status not in ('pending', 'running') then
        select m.id into v_message from public.chat_messages m
        where m.run_id = p_run_id and m.type = 'jelly' order by m.id desc limit 1;
        return jsonb_build_object('message_id', v_message, 'status', v_run.status);
    end if;
    if v_run.status = 'running' and p_answer is not null then
        insert into public.chat_messages
            (user_id, conversation_id, run_id, type, content, application, tool_call)
        select v_run.user_id, v_run.conversation_id, p_run_id, 'tool', t.call ->> 'sentence',
               v_run.application, t.call - 'sentence'
        from jsonb_array_elements(coalesce(p_tool_calls, '[]'::jsonb)) with ordinality as t (call, n)
        order by t.n;
        insert into public.chat_messages
            (user_id, conversation_id, run_id, type, content, application, sources)
        values (v_run.user_id, v_run.conversation_id, p_run_id, 'jelly', p_answer,
                v_run.application, coalesce(p_sources, '[]'::jsonb))
        returning id into v_message;
        insert into public.qa (user_id, question, answer, application, sources, run_id, message_id)
        values (v_run.user_id, coalesce(p_question, ''), p_answer, v_run.application,
                coalesce(p_sources, '[]'::jsonb), p_run_id, v_message);
        update public.conversations set updated_at = clock_timestamp(),
            title = case when title is null and not title_by_user then p_title else title end
        where id = v_run.conversation_id;
    end if;
    update public.runs set status = p_status, finished_at = clock_timestamp(),
        input_tokens = p_input_tokens, output_tokens = p_output_tokens, error = left(p_error, 300)
    where id = p_run_id;
    return jsonb_build_object('message_id', v_message, 'status', p_status);
end;
$$;

-- Ask a run of the token's user to stop (any process serving it polls the flag).
create or replace function public.jelly_request_stop(p_token text, p_run_id uuid)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_status text;
begin
    update public.runs r set stop_requested = true
    from public.users u
    where r.id = p_run_id and u.id = r.user_id and u.token = p_token
    returning r.status into v_status;
    if v_status is null then
        raise exception 'run not found' using errcode = 'JL404';
    end if;
    return jsonb_build_object('run_id', p_run_id, 'status', v_status);
end;
$$;

-- Which of these active runs were asked to stop (by another process, or by interrupt).
create or replace function public.jelly_stop_requested(p_run_ids jsonb)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(r.id), '[]'::jsonb) from public.runs r
    where r.id in (select (jsonb_array_elements_text(p_run_ids))::uuid) and r.stop_requested
$$;

-- Close runs left active by a process that died: those owned by one of p_owners
-- and those past their deadline by p_grace seconds. A run that had stored its
-- question gets the apology as its answer, so no question stays unanswered.
create or replace function public.jelly_recover_runs(
    p_owners jsonb,
    p_apology text,
    p_grace double precision default 30
)
returns integer
language plpgsql
set search_path = ''
as $$
declare
    v_run record;
    v_count integer := 0;
begin
    for v_run in
        select r.id, r.status from public.runs r
        where r.status in ('pending', 'running')
          and (r.owner in (select jsonb_array_elements_text(p_owners))
               or r.deadline_at < clock_timestamp() - make_interval(secs => p_grace)
               or (r.status = 'pending'
                   and r.created_at < clock_timestamp() - make_interval(secs => 3600)))
        for update skip locked
    loop
        perform public.jelly_finish_run(
            v_run.id, 'failed',
            (select m.content from public.chat_messages m
             where m.run_id = v_run.id and m.type = 'human' limit 1),
            case when v_run.status = 'running' then p_apology end,
            '[]'::jsonb, '[]'::jsonb, null, null, 'the server stopped during the run');
        v_count := v_count + 1;
    end loop;
    return v_count;
end;
$$;

-- Processes that own active runs (startup recovery keeps those still alive).
create or replace function public.jelly_active_owners()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(distinct r.owner), '[]'::jsonb) from public.runs r
    where r.status in ('pending', 'running') and r.owner is not null
$$;

-- ---------------------------------------------------------------- conversations

-- A better title than the question's first words (from the model), unless the
-- user has named the conversation.
create or replace function public.jelly_set_auto_title(p_id uuid, p_title text)
returns jsonb
language sql
set search_path = ''
as $$
    update public.conversations set title = p_title
    where id = p_id and not title_by_user
    returning jsonb_build_object('id', id, 'title', title)
$$;

create or replace function public.jelly_list_conversations(
    p_token text, p_limit integer default 20, p_before timestamptz default null
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(public.jelly_conversation_json(c.id)
                              order by c.updated_at desc, c.id desc), '[]'::jsonb)
    from (select c.id, c.updated_at from public.conversations c
          join public.users u on u.id = c.user_id
          where u.token = p_token and (p_before is null or c.updated_at < p_before)
          order by c.updated_at desc, c.id desc
          limit greatest(p_limit, 0)) c
$$;

create or replace function public.jelly_create_conversation(
    p_token text, p_greeting text, p_title text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_user record;
    v_id uuid;
begin
    select * into v_user from public.jelly_user(p_token, p_greeting);
    insert into public.conversations (user_id, title, title_by_user)
    values (v_user.user_id, p_title, p_title is not null)
    returning id into v_id;
    return public.jelly_conversation_json(v_id);
end;
$$;

-- The conversation with its messages (p_id null: the default one), or null when
-- it is not the token's. p_limit bounds the messages (the newest; null: all).
create or replace function public.jelly_get_conversation(
    p_token text, p_id uuid default null, p_limit integer default null
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select public.jelly_conversation_json(c.id) || jsonb_build_object(
        'user_id', c.user_id,
        'messages', (
            select coalesce(jsonb_agg(jsonb_build_object(
                'id', t.id, 'type', t.type, 'content', t.content, 'created', t.created_at,
                'application', t.application, 'run_id', t.run_id, 'run_status', t.status,
                'sources', coalesce(t.sources, '[]'::jsonb), 'tool_call', t.tool_call
            ) order by t.id), '[]'::jsonb)
            from (select m.*, r.status from public.chat_messages m
                  left join public.runs r on r.id = m.run_id
                  where m.conversation_id = c.id
                  order by m.id desc limit p_limit) t))
    from public.conversations c join public.users u on u.id = c.user_id
    where u.token = p_token and (c.id = p_id or (p_id is null and c.is_default))
$$;

create or replace function public.jelly_update_conversation(p_token text, p_id uuid, p_title text)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    update public.conversations c set title = p_title, title_by_user = true,
        updated_at = clock_timestamp()
    from public.users u
    where c.id = p_id and u.id = c.user_id and u.token = p_token;
    if not found then
        raise exception 'conversation not found' using errcode = 'JL404';
    end if;
    return public.jelly_conversation_json(p_id);
end;
$$;

-- Delete a conversation with its messages and runs. The default conversation
-- is emptied rather than removed (the JellyChat protocol always has one).
create or replace function public.jelly_delete_conversation(p_token text, p_id uuid)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_default boolean;
begin
    select c.is_default into v_default from public.conversations c
    join public.users u on u.id = c.user_id
    where c.id = p_id and u.token = p_token;
    if v_default is null then
        raise exception 'conversation not found' using errcode = 'JL404';
    end if;
    if v_default then
        delete from public.chat_messages where conversation_id = p_id;
        delete from public.runs where conversation_id = p_id;
        update public.conversations set title = null, title_by_user = false,
            updated_at = clock_timestamp() where id = p_id;
    else
        delete from public.conversations where id = p_id;
    end if;
    return jsonb_build_object('deleted', p_id);
end;
$$;

-- Only the server may call our functions: execution is taken from public (and,
-- on Supabase, from anon and authenticated) and given to service_role. Every
-- later migration calls this for the functions it adds.
create or replace function public.jelly_server_only(p_functions text[])
returns void
language plpgsql
set search_path = ''
as $$
declare
    f text;
begin
    foreach f in array p_functions loop
        execute format('revoke execute on function %s from public', f);
        if exists (select 1 from pg_roles where rolname = 'anon') then
            execute format('revoke execute on function %s from anon', f);
        end if;
        if exists (select 1 from pg_roles where rolname = 'authenticated') then
            execute format('revoke execute on function %s from authenticated', f);
        end if;
        if exists (select 1 from pg_roles where rolname = 'service_role') then
            execute format('grant execute on function %s to service_role', f);
        end if;
    end loop;
end;
$$;

select public.jelly_server_only(array[
        'public.jelly_user(text, text)',
        'public.jelly_conversation_json(uuid)',
        'public.jelly_create_run(text, text, uuid, text, text, text, text)',
        'public.jelly_begin_run(uuid, text, integer, double precision)',
        'public.jelly_finish_run(uuid, text, text, text, jsonb, jsonb, integer, integer, text, text)',
        'public.jelly_request_stop(text, uuid)',
        'public.jelly_stop_requested(jsonb)',
        'public.jelly_recover_runs(jsonb, text, double precision)',
        'public.jelly_active_owners()',
        'public.jelly_set_auto_title(uuid, text)',
        'public.jelly_list_conversations(text, integer, timestamptz)',
        'public.jelly_create_conversation(text, text, text)',
        'public.jelly_get_conversation(text, uuid, integer)',
        'public.jelly_update_conversation(text, uuid, text)',
        'public.jelly_delete_conversation(text, uuid)',
        'public.jelly_server_only(text[])'
    ]);

create or replace function public.jelly_api_version()
returns integer
language sql
immutable
set search_path = ''
as $$ select 2 $$;

notify pgrst, 'reload schema';
